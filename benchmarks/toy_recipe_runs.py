"""Toy recipe candidates through the real training path, scored on the VALIDATION set.

Where ``toy_recipe_search.py`` re-implements the inner loop (plain SGD only), this script
writes one run config per (candidate, data set, preset, seed) and calls ``python -m scnf train
--no-final-eval`` on it: every mode (``sgd``, ``em-sgd``), L_clf, schedule and FFJORD solver
setting behaves exactly as in the workflow. The test set is never read: the run's monitors
(``train_log.jsonl``: ``mon_heldout_error`` / ``mon_heldout_nll``) score the 10,000-point
validation set (``make_toy(name, "val")``) every ``monitor_every`` epochs and at the end.

    python benchmarks/toy_recipe_runs.py --candidates nat-clf1 --presets toy-glow-gmm \
        --datasets moons circles --seeds 0 1 2 --workers 2

Each finished run's validation curve is merged into ``--out`` (default
``results/toy-recipe/runs.json``, key ``candidate/dataset/preset/seedN``); the run folders
go to ``--work`` and can be deleted. ``--list`` prints the candidates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scnf.provenance import collect, write_json  # noqa: E402

# The recipe before 2026-12-03 (config.yaml's toy section then): a third of each batch labelled.
BEFORE: dict[str, Any] = {
    "mode": "sgd",
    "clf_weight": 0.0,
    "batch_size": 256,
    "labelled_fraction": 0.333,
    "epochs": 150,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-2,
    "schedule": "linear",
}
# eq. (1) at its own weights (10 of 1000 objects labelled, so 1 % of each batch) plus L_clf
# on the labelled rows: the labels' extra weight goes to log p(y|x), not to their density.
NATURAL: dict[str, Any] = {**BEFORE, "labelled_fraction": 0.01, "clf_weight": 1.0, "epochs": 375}

CANDIDATES: dict[str, dict[str, Any]] = {
    "before": {"train": BEFORE},
    "before-em": {"train": {**BEFORE, "mode": "em-sgd", "lr": 3e-3}},
    "nat-clf1": {"train": NATURAL},
    "nat-clf1-em": {"train": {**NATURAL, "mode": "em-sgd"}},
    "nat-clf1-em-lr3e-3": {"train": {**NATURAL, "mode": "em-sgd", "lr": 3e-3}},
    "nat-clf1-lr3e-3": {"train": {**NATURAL, "lr": 3e-3}},
    "nat-clf3": {"train": {**NATURAL, "clf_weight": 3.0}},
    "nat-clf3-em": {"train": {**NATURAL, "clf_weight": 3.0, "mode": "em-sgd"}},
    "nat-clf1-600": {"train": {**NATURAL, "epochs": 150}},
    "nat-clf1-wd01": {"train": {**NATURAL, "weight_decay": 0.1}},
    "lab03-clf1": {"train": {**NATURAL, "labelled_fraction": 0.03}},
    "lab03-clf1-em": {"train": {**NATURAL, "labelled_fraction": 0.03, "mode": "em-sgd"}},
}


def run_config(cand: str, dataset: str, preset: str, seed: int, split: Path) -> dict[str, Any]:
    spec = CANDIDATES[cand]
    train = {
        "max_steps": None,
        "betas": [0.9, 0.999],
        "warmup_steps": 0,
        "grad_clip": None,
        "checkpoint_every": 100000,
        "monitor_every": 25,
        "monitor_size": 10000,
        "estep_every": None,
        "precision": "fp32",
        "compile": False,
        "compile_mode": "default",
        "progress": False,
        **spec["train"],
    }
    return {
        "name": f"toy-recipe/{cand}/{dataset}/{preset}/seed{seed}",
        "dataset": dataset,
        "preset": preset,
        "model": spec.get("model", {}),
        "seed": seed,
        "split": str(split),
        "data": {"dir": "../shared/data", "download": False, "num_train": None, "num_test": None},
        "train": train,
        "eval": {"batch_size": 512},
    }


def run_job(job: dict[str, Any], work: Path) -> dict[str, Any]:
    key = f"{job['candidate']}/{job['dataset']}/{job['preset']}/seed{job['seed']}"
    out = work / key
    out.mkdir(parents=True, exist_ok=True)
    split = work / "splits" / f"{job['dataset']}-seed{job['seed']}.json"
    if not split.exists():
        split.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "scnf", "splits", "--dataset", job["dataset"],
             "--seed", str(job["seed"]), "--out", str(split)],
            check=True, cwd=REPO, capture_output=True,
        )  # fmt: skip
    cfg = run_config(job["candidate"], job["dataset"], job["preset"], job["seed"], split)
    (out / "RUN.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "scnf", "--threads", "1", "train", "--config",
         str(out / "RUN.yaml"), "--out", str(out), "--no-final-eval", "--no-progress"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    curve = [
        {
            "step": r["step"],
            "val_error": r["mon_heldout_error"],
            "val_nll": r["mon_heldout_nll"],
            "lab_error": r["mon_labelled_error"],
            "train_nll": r["train_nll"],
        }
        for r in log
        if "mon_heldout_nll" in r
    ]
    return {
        "key": key,
        **{k: job[k] for k in ("candidate", "dataset", "preset", "seed")},
        "train": cfg["train"],
        "returncode": proc.returncode,
        "stderr_tail": proc.stderr[-2000:] if proc.returncode else "",
        "curve": curve,
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--candidates", nargs="+", default=["nat-clf1"])
    p.add_argument("--presets", nargs="+", default=["toy-glow-glow"])
    p.add_argument("--datasets", nargs="+", default=["moons", "circles"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "results/toy-recipe/runs.json")
    p.add_argument("--work", type=Path, default=REPO / "runs/toy-recipe")
    p.add_argument("--list", action="store_true")
    args = p.parse_args(argv)
    if args.list:
        print(json.dumps({"candidates": CANDIDATES}, indent=1))
        return
    unknown = sorted(set(args.candidates) - set(CANDIDATES))
    if unknown:
        p.error(f"unknown candidate(s) {unknown}; --list shows them")
    jobs = [
        {"candidate": c, "dataset": d, "preset": pr, "seed": s}
        for c in args.candidates
        for pr in args.presets
        for d in args.datasets
        for s in args.seeds
    ]
    jobs.sort(key=lambda j: "ffjord" not in j["preset"])  # longest first
    store = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}, "phases": []}
    start = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        for r in pool.map(lambda j: run_job(j, args.work), jobs):
            store["runs"][r["key"]] = r
            if r["curve"]:
                last, best = r["curve"][-1], min(r["curve"], key=lambda c: c["val_nll"])
                print(
                    f"{r['key']:55s} {r['wall_s']:6.0f}s  end err {last['val_error']:6.2f} "
                    f"nll {last['val_nll']:.4f} | best nll {best['val_nll']:.4f} "
                    f"@ {best['step']}",
                    flush=True,
                )
            else:
                print(f"{r['key']:55s} FAILED rc={r['returncode']}\n{r['stderr_tail']}")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_json(args.out, store)
    wall = time.perf_counter() - start
    store["phases"].append(
        {"argv": vars(args), "jobs": len(jobs), "wall_s": wall, "provenance": collect({}, wall)}
    )
    write_json(args.out, store)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
