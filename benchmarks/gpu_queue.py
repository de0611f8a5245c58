"""The queue of GPU jobs (config/gpu_queue.yaml): what is left, what each job costs, which is next.

A job is a list of runs of one workflow config (``results/<name>/runs/<key>/``); it is done when
every run has its committed results (``metrics.json``, and ``recon.npz`` for a Fig. 2 run).
Predictions follow from the run settings the DAG would write and the last measured rates in the
queue file, so they change when the recipe or the measurement does (tests/test_gpu_queue.py
checks the minutes written beside each job against them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from gpu_common import REPO, script, workflow_config

QUEUE = REPO / "config" / "gpu_queue.yaml"
KINDS = ("session", "scnf", "baseline")
MNIST_TRAIN = 60_000  # training images when data.num_train is null
MNIST_UNLABELLED = 59_900  # the E-step's pass and the baselines' unlabelled pool (100 labelled)


@dataclass
class Job:
    id: str
    kind: str
    runs: list[str]
    predicted_min: float
    measured: bool = True
    note: str = ""


@dataclass
class Queue:
    config_file: Path
    budget_s: float
    rates: dict[str, Any]
    baseline_guess: dict[str, Any]
    jobs: list[Job] = field(default_factory=list)
    tiny: bool = False  # the config's tiny variant (gpu_common.TINY_CONFIG): CPU tests

    @property
    def cfg(self) -> dict[str, Any]:
        return workflow_config(self.config_file, self.tiny)


def load(path: Path = QUEUE, tiny: bool = False) -> Queue:
    raw = yaml.safe_load(Path(path).read_text())
    jobs = [Job(**j) for j in raw["jobs"]]
    for j in jobs:
        if j.kind not in KINDS:
            raise ValueError(f"{path}: job {j.id}: kind {j.kind!r} is not one of {KINDS}")
    if len({j.id for j in jobs}) != len(jobs):
        raise ValueError(f"{path}: job ids must be unique")
    return Queue(REPO / raw["config"], float(raw["budget_s"]), raw["rates"],
                 raw["baseline_guess"], jobs, tiny)  # fmt: skip


# --- runs of the workflow ----------------------------------------------------------------------


def grid_keys(cfg: dict[str, Any]) -> list[str]:
    """Every run key the DAG of ``cfg`` trains (SCNF runs, M1, the per-seed baselines)."""
    grid = script("experiment_grid")
    keys = [r.key for r in grid.all_runs(cfg)]
    if "m1m2" in grid.baseline_models(cfg):
        keys.append("baseline/m1")
    return keys + grid.baseline_keys(cfg)


def fig2_keys(cfg: dict[str, Any]) -> set[str]:
    """Runs whose ``recon.npz`` Fig. 2 reads (Table 3's sizes, first seed)."""
    return {r.key for r in script("experiment_grid").fig2_runs(cfg)}


def run_dir(results: Path, cfg: dict[str, Any], key: str) -> Path:
    """``results/<name>/runs/<key>`` below the results folder ``results``."""
    return Path(results) / cfg["name"] / "runs" / key


def is_done(results: Path, cfg: dict[str, Any], key: str) -> bool:
    d = run_dir(results, cfg, key)
    need = ["metrics.json"] + (["recon.npz"] if key in fig2_keys(cfg) else [])
    return all((d / f).is_file() for f in need)


def missing_runs(job: Job, results: Path, cfg: dict[str, Any]) -> list[str]:
    return [k for k in job.runs if not is_done(results, cfg, k)]


def next_job(q: Queue, results: Path, job_id: str | None = None) -> tuple[Job, list[str]] | None:
    """The first job with a run not yet in ``results`` (or job ``job_id``) and its missing runs."""
    cfg = q.cfg
    for job in q.jobs:
        if job_id is not None and job.id != job_id:
            continue
        missing = missing_runs(job, results, cfg)
        if missing or job_id is not None:
            return job, missing
    if job_id is not None:
        raise SystemExit(f"no job {job_id!r} in the queue")
    return None


# --- predictions -------------------------------------------------------------------------------


def scnf_run_s(settings: dict[str, Any], rates: dict[str, Any], recon: bool) -> float:
    """Device seconds of one SCNF run: split, training, the test set once, Fig. 2's array."""
    t = settings["train"]
    per_epoch = math.ceil((settings["data"]["num_train"] or MNIST_TRAIN) / t["batch_size"])
    steps = t["epochs"] * per_epoch
    if t["max_steps"] is not None:
        steps = min(steps, t["max_steps"])
    monitors = (steps // per_epoch) // t["monitor_every"] + 1 if t["monitor_every"] else 1
    esteps = 0
    if t["mode"] == "em-sgd":
        esteps = (steps - 1) // (t["estep_every"] or per_epoch) + 1
    return (
        rates["splits_s"]
        + rates["scnf_process_s"]
        + rates["scnf_first_epoch_s"]
        + max(steps - per_epoch, 0) * t["batch_size"] / rates["scnf_images_per_s"]
        + monitors * rates["monitor_s"]
        + esteps * MNIST_UNLABELLED / rates["estep_images_per_s"]
        + rates["evaluate_s"]
        + (rates["reconstruct_s"] if recon else 0.0)
    )


def baseline_steps(cfg: dict[str, Any], key: str) -> int:
    """Optimiser steps of a baseline run of ``cfg`` (M1: batches of all images; M2: of the
    unlabelled ones)."""
    model = key.split("/")[1]
    t = cfg["baseline"][model]
    num_train = cfg["baseline"].get("data", {}).get("num_train") or MNIST_TRAIN
    if model == "m1":
        per_epoch = math.ceil(num_train / t["batch_size"])
    else:
        per_epoch = math.ceil((num_train - 100) / t["unlabelled_batch"])
    steps = t["epochs"] * per_epoch
    return steps if t["max_steps"] is None else min(steps, t["max_steps"])


def baseline_run_s(cfg: dict[str, Any], key: str, guess: dict[str, Any]) -> float:
    model = key.split("/")[1]
    return baseline_steps(cfg, key) * guess[f"{model}_ms_per_step"] / 1000 + guess["process_s"]


def run_s(q: Queue, cfg: dict[str, Any], key: str) -> float:
    if key.startswith("baseline/"):
        return baseline_run_s(cfg, key, q.baseline_guess)
    dataset, variant, seed = key.split("/")
    settings = script("experiment_grid").run_settings(cfg, dataset, variant, int(seed[4:]))
    return scnf_run_s(settings, q.rates, key in fig2_keys(cfg))


def job_s(q: Queue, job: Job, runs: list[str] | None = None) -> float:
    """Predicted device seconds of ``job`` for ``runs`` (default: all its runs)."""
    cfg = q.cfg
    total = sum(run_s(q, cfg, k) for k in (job.runs if runs is None else runs))
    return total + (q.rates["bench_s"] if job.kind == "session" else 0.0)


def check(q: Queue) -> list[str]:
    """Problems of the queue file: unknown runs, runs listed twice, stale predictions."""
    cfg, problems, seen = q.cfg, [], set()
    known = set(grid_keys(cfg))
    for job in q.jobs:
        for key in job.runs:
            if key not in known:
                problems.append(f"{job.id}: {key} is not a run of {q.config_file.name}")
            if key in seen:
                problems.append(f"{job.id}: {key} is listed by two jobs")
            seen.add(key)
        predicted = round(job_s(q, job) / 60, 1)
        if job.runs and predicted != job.predicted_min:
            problems.append(f"{job.id}: predicted_min {job.predicted_min} != {predicted}")
        if job.kind == "baseline" and job.measured:
            problems.append(f"{job.id}: a baseline prediction is unmeasured (measured: false)")
    return problems


def status_lines(q: Queue, results: Path, budget_s: float | None = None) -> list[str]:
    """The queue's remaining jobs with their predicted GPU-minutes, in order."""
    cfg, budget = q.cfg, budget_s or q.budget_s
    lines, total, done = [], 0.0, 0
    for job in q.jobs:
        missing = missing_runs(job, results, cfg)
        if not missing:
            done += 1
            continue
        secs = job_s(q, job, missing)
        total += secs
        flags = [] if job.measured else ["unmeasured"]
        if secs > budget:
            flags.append(f"over the {budget:.0f} s budget")
        part = "" if len(missing) == len(job.runs) else f" ({len(missing)}/{len(job.runs)} left)"
        lines.append(
            f"{job.id:<26} {job.kind:<8} {secs / 60:5.1f} min  "
            f"{', '.join(missing)}{part}{'  [' + '; '.join(flags) + ']' if flags else ''}"
        )
    head = (
        f"{q.config_file.name}: {len(lines)} jobs left ({done} done), about {total / 60:.0f} "
        f"GPU-minutes predicted; results/{cfg['name']}/runs/<run> below {results}"
    )
    return [head, *lines]
