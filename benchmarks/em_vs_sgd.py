"""SGD vs EM-SGD side by side at the quick (CPU) settings: do the two optimisers now differ?

For every (dataset, head, seed) this trains the same run twice, once with ``mode: sgd`` and
once with ``mode: em-sgd`` (no L_clf in either, so only the optimiser differs), with the
settings the workflow would give it under ``config/quick.yaml`` (built by the workflow's own
``experiment_grid.run_settings``), and reports the final test error and NLL (bits/dim for
MNIST) of each run and the difference of each pair. Both runs of a pair share the seed, the
label split, the initialisation and (the sampler's RNG stream being the same) every batch.

Toys: moons and circles, f = Glow, h in {glow, gmm}, seeds 0-2 (the quick toy settings:
300 steps of batch 256, an E-step every epoch = 4 steps). MNIST: the quick settings (200
steps of batch 64 on 6,000 images, E-steps at steps 0, 94, 188), h in {glow, gmm}, seed 0.

Run (one thread, about 10 minutes on this project's CPU machine):

    python benchmarks/em_vs_sgd.py --threads 1 --out results/bench/em-vs-sgd-quick.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

from experiment_grid import mnist_variant, run_settings, toy_variant  # noqa: E402

from scnf.data import load_mnist, make_label_split, make_toy, save_split  # noqa: E402
from scnf.data.splits import MNIST_PER_CLASS, TOY_PER_CLASS  # noqa: E402
from scnf.provenance import collect, write_json  # noqa: E402
from scnf.train import run_config_from_dict  # noqa: E402
from scnf.train.loop import train  # noqa: E402


def _split(dataset: str, seed: int, data_dir: str, folder: Path) -> Path:
    path = folder / f"{dataset}-seed{seed}.json"
    if not path.is_file():
        if dataset == "mnist":
            _, labels = load_mnist(data_dir, train=True)
            per_class = MNIST_PER_CLASS
        else:
            _, labels = make_toy(dataset, "train")
            per_class = TOY_PER_CLASS
        save_split(path, make_label_split(labels, per_class, seed), labels, seed, dataset)
    return path


def _run(settings: dict[str, Any], split: Path, out: Path) -> dict[str, Any]:
    cfg = run_config_from_dict({**settings, "split": str(split)})
    cfg.train.progress = False
    start = time.process_time()
    result = train(cfg, out, device="cpu")
    return {
        "test_error": result["test_error"],
        "test_nll": result["test_nll"],
        "test_bpd": result["test_bpd"],
        "mon_heldout_error": result["mon_heldout_error"],
        "final_train_nll": result["final_train_nll"],
        "steps": result["steps"],
        "cpu_s": time.process_time() - start,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=REPO / "config" / "quick.yaml")
    p.add_argument("--toy-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--mnist-seeds", type=int, nargs="*", default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "results/bench/em-vs-sgd-quick.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.config.read_text())
    config["data_dir"] = str((REPO / config["data_dir"]).resolve())
    config["toy"]["clf_weight"] = 0.0

    jobs: list[tuple[str, str, str, int, str]] = []  # dataset, head, mode, seed, variant
    for dataset in ("moons", "circles"):
        for head in ("glow", "gmm"):
            for seed in args.toy_seeds:
                for mode in ("sgd", "em-sgd"):
                    jobs.append((dataset, head, mode, seed, toy_variant("glow", head)))
    for head in ("glow", "gmm"):
        for seed in args.mnist_seeds:
            for mode in ("sgd", "em-sgd"):
                jobs.append(("mnist", head, mode, seed, mnist_variant(head, mode, False, 196)))

    wall0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for dataset, head, mode, seed, variant in jobs:
            settings = run_settings(config, dataset, variant, seed)
            if dataset != "mnist":
                settings["train"]["mode"] = mode
            split = _split(dataset, seed, config["data_dir"], tmp)
            res = _run(settings, split, tmp / f"{dataset}-{head}-{mode}-{seed}")
            runs.append({"dataset": dataset, "head": head, "mode": mode, "seed": seed, **res})
            print(
                f"{dataset:8s} {head:5s} {mode:6s} seed {seed}: error {res['test_error']:6.2f} % "
                f"NLL {res['test_nll']:.5f}"
                + (f" bpd {res['test_bpd']:.4f}" if res["test_bpd"] is not None else "")
                + f"  ({res['cpu_s']:.1f} CPU s)",
                flush=True,
            )
    pairs = []
    for a in runs:
        if a["mode"] != "sgd":
            continue
        (b,) = [
            r
            for r in runs
            if r["mode"] == "em-sgd"
            and (r["dataset"], r["head"], r["seed"]) == (a["dataset"], a["head"], a["seed"])
        ]
        pairs.append(
            {
                "dataset": a["dataset"],
                "head": a["head"],
                "seed": a["seed"],
                "error_sgd": a["test_error"],
                "error_em": b["test_error"],
                "d_error": b["test_error"] - a["test_error"],
                "nll_sgd": a["test_nll"],
                "nll_em": b["test_nll"],
                "d_nll": b["test_nll"] - a["test_nll"],
                "bpd_sgd": a["test_bpd"],
                "bpd_em": b["test_bpd"],
                "d_bpd": None if a["test_bpd"] is None else b["test_bpd"] - a["test_bpd"],
            }
        )
    wall = time.perf_counter() - wall0
    record = {
        "what": "final test error (%) and NLL (nats; bits/dim for MNIST) of SGD vs EM-SGD pairs "
        "(same seed, split, init and batches; no L_clf) at the quick settings; d_* = EM - SGD",
        "command": f"python benchmarks/em_vs_sgd.py --threads {args.threads} --out {args.out}",
        "config": str(args.config.relative_to(REPO)),
        "threads": args.threads,
        "pairs": pairs,
        "runs": runs,
        "provenance": collect({"toy": config["toy"], "mnist": config["mnist"]}, wall),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, record)
    print(f"wrote {args.out} ({wall:.0f} s)")
    for q in pairs:
        print(
            f"{q['dataset']:8s} {q['head']:5s} seed {q['seed']}: error {q['error_sgd']:6.2f} -> "
            f"{q['error_em']:6.2f} ({q['d_error']:+.2f}), NLL {q['nll_sgd']:.5f} -> "
            f"{q['nll_em']:.5f} ({q['d_nll']:+.5f})"
            + (f", bpd {q['bpd_sgd']:.4f} -> {q['bpd_em']:.4f}" if q["bpd_sgd"] else "")
        )


if __name__ == "__main__":
    main()
