"""Command line: ``python -m scnf <command>`` (splits, train, evaluate, ..., baseline-m2).

Every sub-command reads files and writes files; the Snakemake workflow calls
these and nothing else. Run ``python -m scnf <command> --help`` for the options.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DESCRIPTION = (
    "Semi-Conditional Normalizing Flows (Atanov et al., 2019): label splits, training, "
    "evaluation, figures, benchmarks and the Kingma et al. (2014) baselines."
)
DATA_DIR_ENV = "SCNF_DATA_DIR"
THREADS_HELP = (
    "CPU threads torch may use (default 1; 0 = torch's own default, all cores). The workflow "
    "passes each job's `threads`. Accepted before or after the command name."
)
DATA_DIR_NOTE = (
    f"MNIST is read from data.dir of the config; a config that does not set data.dir reads "
    f"${DATA_DIR_ENV} when it is set (else ../shared/data)."
)


def _threads(text: str) -> int:
    """A thread count for argparse: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _default_data_dir() -> str:
    """``$SCNF_DATA_DIR`` if set, else the config default ``../shared/data``."""
    return os.environ.get(DATA_DIR_ENV) or "../shared/data"


def _env_data_dir(cfg: Any, config_path: Path) -> None:
    """Set ``cfg.data.dir`` from ``$SCNF_DATA_DIR`` when the config file does not set it.

    An explicit ``data.dir`` in the file always wins; without the variable nothing changes.
    """
    import yaml

    env = os.environ.get(DATA_DIR_ENV)
    if not env:
        return
    raw = yaml.safe_load(Path(config_path).read_text())
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict) or "dir" not in data:
        cfg.data.dir = env


def _load_config(loader: Callable[[Path], Any], args: argparse.Namespace) -> Any:
    """A training command's config: ``loader(args.config)`` with the data folder from
    ``$SCNF_DATA_DIR`` (when the file does not set it) and ``--no-progress`` applied."""
    cfg = loader(args.config)
    _env_data_dir(cfg, args.config)
    if args.no_progress:
        cfg.train.progress = False
    return cfg


def _splits(args: argparse.Namespace) -> None:
    from scnf.data import (
        MNIST_PER_CLASS,
        TOY_PER_CLASS,
        load_mnist,
        make_label_split,
        make_toy,
        save_split,
    )

    if args.dataset == "mnist":
        _, labels = load_mnist(args.data_dir, train=True, download=args.download)
        per_class = args.per_class or MNIST_PER_CLASS
    else:
        _, labels = make_toy(args.dataset, "train")
        per_class = args.per_class or TOY_PER_CLASS
    idx = make_label_split(labels, per_class, args.seed)
    save_split(args.out, idx, labels, args.seed, args.dataset)
    print(f"wrote {args.out}: {len(idx)} labelled of {len(labels)}")


def _train(args: argparse.Namespace) -> None:
    from scnf.train.config import load_run_config
    from scnf.train.loop import train

    cfg = _load_config(load_run_config, args)
    result = train(cfg, args.out, device=args.device, final_eval=not args.no_final_eval)
    if args.no_final_eval:
        print(f"done: {result['steps']} steps, {result['train_wall_s']:.1f} s")
        return
    print(
        f"done: test error {result['test_error']:.2f}%, test NLL {result['test_nll']:.4f} nats"
        + (f", {result['test_bpd']:.4f} bits/dim" if result["test_bpd"] is not None else "")
        + f", {result['train_wall_s']:.1f} s"
    )


def _evaluate(args: argparse.Namespace) -> None:
    from scnf.evaluate import evaluate_run
    from scnf.provenance import write_json

    metrics = evaluate_run(args.run, args.device)
    write_json(args.out, metrics)
    print({k: metrics[k] for k in ("test_error", "train_error", "test_nll", "test_bpd")})


def _reconstruct(args: argparse.Namespace) -> None:
    from scnf.reconstruct import reconstruct_run

    reconstruct_run(args.run, args.out, args.num_images, args.device)
    print(f"wrote {args.out}")


def _toy_plot(args: argparse.Namespace) -> None:
    from scnf.reconstruct import toy_plot_run

    toy_plot_run(args.run, args.out)
    print(f"wrote {args.out}")


def _toy_limits(args: argparse.Namespace) -> None:
    import time

    from scnf.data.toy_limits import toy_limits
    from scnf.provenance import collect, write_json

    start = time.perf_counter()
    settings = {"n_samples": args.n_samples, "seed": args.seed, "n_angles": args.n_angles}
    out = {name: toy_limits(name, **settings) for name in ("moons", "circles")}
    out["provenance"] = collect(settings, time.perf_counter() - start)
    write_json(args.out, out)
    for name in ("moons", "circles"):
        r = out[name]
        print(
            f"{name}: entropy {r['entropy_nats']:.4f} +- {r['entropy_se']:.4f} nats, "
            f"Bayes error {r['bayes_error_pct']:.4f} +- {r['bayes_error_se']:.4f} %"
        )
    print(f"wrote {args.out}")


def _bench(args: argparse.Namespace) -> None:
    from scnf.bench import main as bench_main

    bench_main(args)


def _baseline_m1(args: argparse.Namespace) -> None:
    from scnf.baselines.config import load_m1_config
    from scnf.baselines.train import train_m1

    cfg = _load_config(load_m1_config, args)
    result = train_m1(cfg, args.out)
    print(f"done: test ELBO {result['test_elbo']:.2f} nats, {result['train_wall_s']:.1f} s")


def _baseline_m2(args: argparse.Namespace) -> None:
    from scnf.baselines.config import load_m2_config
    from scnf.baselines.train import train_m2

    cfg = _load_config(load_m2_config, args)
    result = train_m2(cfg, args.out)
    print(
        f"done: {cfg.model} test error {result['test_error']:.2f}%, train error "
        f"{result['train_error']:.2f}%, {result['train_wall_s']:.1f} s"
    )


def build_parser() -> argparse.ArgumentParser:
    from scnf import __version__

    p = argparse.ArgumentParser(prog="scnf", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"scnf {__version__}")
    p.add_argument("--threads", type=_threads, default=None, help=THREADS_HELP)
    # The same flag after the command name (shown in each command's --help); SUPPRESS keeps a
    # value given before the command name when it is not repeated.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=_threads, default=argparse.SUPPRESS, help=THREADS_HELP)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, what: str, **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=what, description=what, parents=[common], **kw)

    devices = ["auto", "cpu", "cuda"]
    device_help = "where to run: auto = CUDA if visible, else the CPU"

    s = command("splits", "draw and save a label split (indices of labelled objects)")
    s.add_argument(
        "--dataset",
        required=True,
        choices=["moons", "circles", "mnist"],
        help="moons / circles: the generated toy sets; mnist: read from --data-dir",
    )
    s.add_argument("--seed", type=int, required=True, help="split seed (one split per seed)")
    s.add_argument("--out", type=Path, required=True, help="JSON file to write")
    s.add_argument(
        "--per-class",
        type=int,
        default=None,
        help="labelled objects per class (default: 10 for MNIST, 5 for the toy sets)",
    )
    s.add_argument(
        "--data-dir",
        default=_default_data_dir(),
        help=f"MNIST root holding MNIST/raw (default: ${DATA_DIR_ENV} if set, else "
        "../shared/data; now %(default)s)",
    )
    s.add_argument("--download", action="store_true", help="download MNIST if missing")
    s.set_defaults(func=_splits)

    s = command(
        "train",
        "train one run from a run config (resumes if interrupted)",
        epilog=DATA_DIR_NOTE + " A run directory holding a checkpoint resumes when only keys "
        "outside the protocol changed (device, data location, checkpoint / monitor intervals, "
        "compilation, progress bar, name); otherwise the old run moves to superseded-<time>/.",
    )
    s.add_argument("--config", type=Path, required=True, help="run config YAML (see README)")
    s.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, logs)")
    s.add_argument(
        "--device",
        choices=devices,
        default=None,
        help="overrides train.device of the config; an explicit cpu also runs what auto "
        "refuses (a run estimated at more than a day on the CPU)",
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument(
        "--no-final-eval",
        action="store_true",
        help="skip the test-set evaluation at the end (the workflow runs `evaluate` instead)",
    )
    s.set_defaults(func=_train)

    s = command("evaluate", "test error, train error, NLL and bits/dim of a run")
    s.add_argument("--run", type=Path, required=True, help="finished run directory")
    s.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    s.add_argument("--device", choices=devices, default="auto", help=device_help)
    s.set_defaults(func=_evaluate)

    s = command("reconstruct", "Fig. 2: decode test images from z_f with z_aux = 0")
    s.add_argument("--run", type=Path, required=True, help="finished MNIST run directory")
    s.add_argument("--out", type=Path, required=True, help=".npz to write")
    s.add_argument("--num-images", type=int, default=10, help="test images to reconstruct")
    s.add_argument("--device", choices=devices, default="auto", help=device_help)
    s.set_defaults(func=_reconstruct)

    s = command("toy-plot", "learned density and decision regions of a toy run")
    s.add_argument("--run", type=Path, required=True, help="finished toy run directory")
    s.add_argument("--out", type=Path, required=True, help="PNG to write")
    s.set_defaults(func=_toy_plot)

    s = command("toy-limits", "entropy and Bayes error of the toy generators (Table 1's limits)")
    s.add_argument("--out", type=Path, required=True, help="JSON file to write")
    s.add_argument("--n-samples", type=int, default=200_000, help="Monte Carlo samples per set")
    s.add_argument("--seed", type=int, default=2019, help="seed of the Monte Carlo samples")
    s.add_argument("--n-angles", type=int, default=2048, help="quadrature points per class")
    s.set_defaults(func=_toy_limits)

    for name, func, what in (
        ("baseline-m1", _baseline_m1, "Kingma et al. (2014) M1: a VAE on all training images"),
        ("baseline-m2", _baseline_m2, "Kingma et al. (2014) M2 / M1+M2 on one label split"),
    ):
        s = command(name, f"{what} (resumes if interrupted)", epilog=DATA_DIR_NOTE)
        s.add_argument(
            "--config", type=Path, required=True, help="baseline config YAML/JSON (scnf.baselines)"
        )
        s.add_argument("--out", type=Path, required=True, help="run directory (metrics.json)")
        s.add_argument("--no-progress", action="store_true", help="no progress bar")
        s.set_defaults(func=func)

    s = command("bench", "training / evaluation throughput (wall and CPU time) and cost ratios")
    from scnf.bench import add_arguments

    add_arguments(s)
    s.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a sub-command; expected failures (bad config, bad data, divergence) print one
    clear line and exit 1, anything else keeps its traceback."""
    from scnf.data.mnist import MNISTDataError
    from scnf.train.loop import NonFiniteLossError

    args = build_parser().parse_args(argv)
    threads = 1 if args.threads is None else args.threads
    if threads:  # one thread by default: small runs share a machine without contention
        import torch

        torch.set_num_threads(threads)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, MNISTDataError, NonFiniteLossError) as err:
        print(f"scnf {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0
