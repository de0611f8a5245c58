"""GPU sessions: issue 14's time-boxed session, and the queue of GPU jobs (issue 22).

Subcommands (the queue, config/gpu_queue.yaml; see benchmarks/gpu_queue.py and gpu_jobs.py):

    python benchmarks/gpu_session.py status                 # jobs left, predicted GPU-minutes
    SCNF_GIT_COMMIT=<hash> PYTHONPATH=$PWD python3 benchmarks/gpu_session.py next \\
        --out $OUT --data-dir .gpu/data [--budget 570]      # on the device: the next job
    python benchmarks/gpu_session.py import <fetched dir>   # here: into results/<name>/

Without a subcommand, issue 14's session, unchanged:

Run on the CUDA machine lent by the device tool, as ONE command (the machine goes back 30 s
after a call, so a second call may have to start a fresh one). The copy of the tree sent there
has no .git, so the commit is declared through ``SCNF_GIT_COMMIT``:

    SCNF_GIT_COMMIT=<hash> PYTHONPATH=$PWD python3 benchmarks/gpu_session.py \\
        --out $OUT --data-dir .gpu/data --budget 585

``--tiny --no-compile`` runs the same phases on a CPU with a small model and a few steps in
one to three minutes (``tests/test_gpu_session.py``), so the script cannot rot between GPU
sessions. ``--phases bench`` or ``--phases train`` runs one phase alone.

Phases, each bounded so that the whole script ends inside ``--budget`` seconds:

1. ``bench``: ``scnf bench`` of mnist-glow (authors' size, batch 256) eager fp32 (with the
   cost ratios) and compiled bf16 (CUDA graphs); bits/dim of the training objective in bf16
   vs fp32 on the same perturbed weights and batch of real images.
2. ``train``: the recipe of ``--config`` (config/h200.yaml: Table 2's SCNF-GLOW / SGD row),
   composed exactly as the workflow composes a run's RUN.yaml (``experiment_grid.run_settings``
   of split seed 0), trained by ``scnf train --no-final-eval``. Only monitors (labelled
   error, transductive error and bits/dim on unlabelled training images) are logged during
   training; if the recipe does not fit the time left, its ``max_steps`` is cut to fit and the
   session says so (``recipe_exact: false``). Then the test set once (``scnf evaluate``) and
   the bf16-vs-fp32 check on the trained weights.
3. (part of ``train``) the Fig. 2 reconstruction array (``scnf reconstruct``), if time is left.

Writes under ``--out`` (at most 8 files come back from the device tool, no weights; the run
itself lives in a temporary directory): ``session.json`` (provenance, hardware, every
benchmark, the precision checks, the recipe and the run config, the training log, final
metrics and each target of issue 14 with its value, threshold and ``met``), ``session.log``
(progress lines), and the run's ``RUN.yaml``, ``train_log.jsonl``, ``train_metrics.json``,
``metrics.json`` and ``recon.npz``, under the names the workflow gives them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import gpu_common as common
from gpu_bench import (
    MEASURED_IMAGES_PER_S,
    TARGETS,
    bpd_check_perturbed,
    bpd_check_trained,
    evaluate_targets,
    monitor_curve,
    run_benches,
)
from gpu_common import REPO, TINY_OVERRIDES, left, log, run_cmd, scnf_cmd
from gpu_runs import scnf_run

FIXED_TRAIN_S = 50.0  # train process start, data, eager first step and compilation (2026-11-28)
MONITOR_S = 2.0  # one monitor: a forward pass over 10,100 images, eager fp32
AFTER_TRAIN_S = 25.0  # kept for `scnf evaluate` after training; the reconstruction is optional
RUN_FILES = ("RUN.yaml", "train_log.jsonl", "train_metrics.json", "metrics.json", "recon.npz")


def recipe(config_file: Path, seed: int = 0) -> dict[str, Any]:
    """The run settings the workflow writes to RUN.yaml for Table 2's first row of the config."""
    grid = common.script("experiment_grid")
    cfg = common.workflow_config(config_file)
    row = cfg["mnist"]["table2"][0]
    if (row["head"], row["mode"], row["clf"]) != ("glow", "sgd", False):
        raise SystemExit(f"{config_file}: table2's first row must be SCNF-GLOW / SGD / no L_clf")
    variant = grid.mnist_variant("glow", "sgd", False, grid.TABLE2_ZF_DIM)
    return {
        "config_file": str(config_file.relative_to(REPO))
        if config_file.is_relative_to(REPO)
        else str(config_file),
        "name": cfg["name"],
        "protocol": cfg["protocol"],
        "variant": variant,
        "run_dir_in_workflow": f"results/{cfg['name']}/runs/mnist/{variant}/seed{seed}",
        "settings": grid.run_settings(cfg, "mnist", variant, seed),
    }


def write_session(out: Path, session: dict) -> None:
    session["targets"] = evaluate_targets(session)
    session["total_wall_s"] = time.perf_counter() - common.START
    (out / "session.json").write_text(json.dumps(session, indent=1, default=str))


def phase_bench(a: argparse.Namespace, session: dict, bench_budget: float) -> None:
    """Phase 1: throughput, cost ratio, FLOP/s and the bf16 check on perturbed weights."""
    run_benches(session, ["fp32", "fast"], a.tiny, a.no_compile, bench_budget)
    session.setdefault("bpd_check", {})["perturbed"] = bpd_check_perturbed(a.tiny, a.data_dir)


def run_config(a: argparse.Namespace, rec: dict[str, Any], images_per_s: float, budget_s: float):
    """The recipe's settings, with the data directory (and --tiny's overrides) of this machine;
    ``max_steps`` is cut only when the recipe would not fit ``budget_s`` seconds of training."""
    s = json.loads(json.dumps(rec["settings"]))  # deep copy
    s["data"]["dir"] = a.data_dir
    if a.tiny:
        for section, values in TINY_OVERRIDES.items():
            s[section].update(values)
    if a.no_compile:
        s["train"]["compile"] = False
    t = s["train"]
    num_train = s["data"]["num_train"] or 60_000
    per_epoch = math.ceil(num_train / t["batch_size"])
    steps = t["epochs"] * per_epoch
    if t["max_steps"] is not None:
        steps = min(steps, t["max_steps"])
    monitors = (steps // per_epoch) // t["monitor_every"] + 1 if t["monitor_every"] else 1
    estimate = FIXED_TRAIN_S + steps * t["batch_size"] / images_per_s + monitors * MONITOR_S
    sizing = {
        "recipe_steps": steps,
        "estimated_train_s": estimate,
        "available_s": budget_s,
        "images_per_s_assumed": images_per_s,
        "recipe_exact": True,
    }
    if not a.tiny and estimate > budget_s:
        fit = int(
            (budget_s - FIXED_TRAIN_S - monitors * MONITOR_S) * images_per_s / t["batch_size"]
        )
        t["max_steps"] = max(fit, 10)
        sizing.update(recipe_exact=False, steps=t["max_steps"])
        log(
            f"the recipe's {steps} steps need ~{estimate:.0f}s > {budget_s:.0f}s: cut to "
            f"{t['max_steps']} steps (recipe_exact false)"
        )
    else:
        sizing["steps"] = steps
    return s, sizing


def phase_train(a: argparse.Namespace, session: dict, rec: dict[str, Any]) -> None:
    """Phases 2 and 3: the recipe, monitors only, then the test set once and Fig. 2."""
    fast = (session.get("bench") or {}).get("compiled-bf16")
    ips = fast["train_images_per_s"] if fast else MEASURED_IMAGES_PER_S
    ips *= 0.95  # the loop's epochs ran at ~95 % of the bare step on 2026-11-28
    budget_s = min(TARGETS["train_time"][1], left(a.budget) - AFTER_TRAIN_S - 10)
    settings, sizing = run_config(a, rec, ips, budget_s)
    run = common.tmp_dir() / "run"
    run.mkdir()
    split = run / "split.json"
    seed = str(settings["seed"])
    splits = scnf_cmd("splits", "--dataset", "mnist", "--seed", seed, "--out", str(split))
    rc, _, err = run_cmd([*splits, "--data-dir", a.data_dir], 120)
    if rc != 0:
        raise SystemExit(f"splits failed: {err[-2000:]}")
    train: dict[str, Any] = {"sizing": sizing}
    session["train"] = train

    def update(partial: dict[str, Any]) -> None:
        train.update(partial)
        train["monitor_curve"] = monitor_curve(train.get("log", []))
        write_session(a.out, session)

    deadline = common.START + a.budget - 3
    scnf_run(settings, run, split, deadline, 4 if a.tiny else 10, on_update=update)
    if train.get("metrics") and left(a.budget) > 15:
        session["bpd_check"]["trained"] = bpd_check_trained(run)
        write_session(a.out, session)
    for name in RUN_FILES:
        if (run / name).exists():
            shutil.copy2(run / name, a.out / name)


def main_session(argv: list[str]) -> None:
    """Issue 14's session (no subcommand)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data-dir", default=".gpu/data", help="folder holding MNIST/raw")
    p.add_argument(
        "--config",
        type=Path,
        default=REPO / "config" / "h200.yaml",
        help="workflow config whose Table 2 first row is the recipe",
    )
    p.add_argument("--budget", type=float, default=585.0, help="seconds for the whole script")
    p.add_argument("--bench-budget", type=float, default=90.0, help="seconds for phase 1")
    p.add_argument("--phases", default="bench,train", help="comma list of: bench, train")
    p.add_argument("--tiny", action="store_true", help="small model and steps (CPU script test)")
    p.add_argument("--no-compile", action="store_true", help="eager bf16 instead of compiled")
    a = p.parse_args(argv)
    phases = set(a.phases.split(","))
    if not phases <= {"bench", "train"}:
        p.error(f"--phases: unknown {sorted(phases - {'bench', 'train'})}")
    a.out.mkdir(parents=True, exist_ok=True)
    common.LOG_FILE = a.out / "session.log"
    common.LOG_FILE.write_text("")

    from gpu_bench import ANCHOR_IMAGES_PER_S, BF16_PEAK_TFLOP_S

    from scnf.provenance import collect

    rec = recipe(a.config.resolve())
    session: dict[str, Any] = {
        "what": "benchmarks/gpu_session.py: one time-boxed session (issue 14)",
        "argv": sys.argv,
        "hardware": common.hardware(),
        "anchor_authors_images_per_s": ANCHOR_IMAGES_PER_S,
        "bf16_peak_tflop_per_s": BF16_PEAK_TFLOP_S,
        "provenance": collect(vars(a) | {"out": str(a.out), "config": str(a.config)}),
        "recipe": rec,
        "tiny_overrides": TINY_OVERRIDES if a.tiny else None,
        "bench": {},
        "bpd_check": {},
    }
    try:
        if "bench" in phases:
            phase_bench(a, session, min(a.bench_budget, left(a.budget)))
            write_session(a.out, session)  # phase 1 is kept even if phase 2 fails
        if "train" in phases:
            phase_train(a, session, rec)
    finally:
        write_session(a.out, session)
        common.cleanup()  # weights never reach --out
    log("targets: " + json.dumps({k: v["met"] for k, v in session["targets"].items()}))


def main_queue(argv: list[str]) -> int:
    """The queue's subcommands: status, next, import."""
    p = argparse.ArgumentParser(prog="gpu_session.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    queue = {"type": Path, "default": REPO / "config" / "gpu_queue.yaml", "help": "queue file"}
    results = {"type": Path, "default": REPO / "results", "help": "results folder to look in"}
    s = sub.add_parser("status", help="the jobs left and their predicted GPU-minutes")
    s.add_argument("--queue", **queue)
    s.add_argument("--results", **results)
    s.add_argument("--budget", type=float, default=None, help="seconds per device call")
    s.add_argument("--tiny", action="store_true", help="the queue config's tiny variant")
    n = sub.add_parser("next", help="run the first job whose results are not in --results")
    n.add_argument("--out", type=Path, required=True)
    n.add_argument("--data-dir", default=".gpu/data", help="folder holding MNIST/raw")
    n.add_argument("--budget", type=float, default=None, help="seconds for the whole command")
    n.add_argument("--job", default=None, help="this job instead of the next one")
    n.add_argument("--queue", **queue)
    n.add_argument("--results", **results)
    n.add_argument("--tiny", action="store_true", help="the config's tiny variant (CPU test)")
    n.add_argument("--no-compile", action="store_true", help="eager instead of compiled")
    i = sub.add_parser("import", help="take a fetched job's files into results/<name>/")
    i.add_argument("fetched", type=Path, nargs="?", help="folder holding session.json")
    i.add_argument("--workdir", type=Path, default=REPO, help="where results/ lives")
    i.add_argument("--allow-tiny", action="store_true", help="accept --tiny runs (tests)")
    i.add_argument("--force", action="store_true", help="replace runs imported before")
    i.add_argument(
        "--restamp", action="store_true", help="only reset imported files' times to DAG order"
    )
    a = p.parse_args(argv)
    if a.command == "status":
        import gpu_queue

        q = gpu_queue.load(a.queue, a.tiny)
        print("\n".join(gpu_queue.status_lines(q, a.results, a.budget)))
        return 0
    if a.command == "next":
        import gpu_jobs
        import gpu_queue

        a.budget = a.budget or gpu_queue.load(a.queue).budget_s
        return gpu_jobs.main_next(a)
    import gpu_import

    return gpu_import.main(a)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if len(sys.argv) > 1 and sys.argv[1] in ("status", "next", "import"):
        sys.exit(main_queue(sys.argv[1:]))
    main_session(sys.argv[1:])
