"""One run of a GPU job, written in the layout and under the paths the workflow gives it.

Queue jobs run in a scratch folder ``work`` that holds ``results/<name>/...`` as the workflow's
working directory does, with ``work`` as the current directory, so every path a run records
(its split, M1's run for M1+M2) is the one the DAG writes: the run's records then say it is the
DAG's run (workflow/scripts/run_records.py), whatever machine trained it.

* SCNF run (Tables 2, 3): RUN.yaml (``experiment_grid.run_settings``), ``scnf train
  --no-final-eval`` watched against the deadline, the test set once (``scnf evaluate``) and,
  for a Fig. 2 run, ``scnf reconstruct``.
* Baseline (Kingma et al.'s M1, M2, M1+M2): BASELINE.json as the workflow's rule writes it,
  trained in this process by ``scnf.baselines`` on its GPU path (``scnf.baselines.graphed``:
  one CUDA graph per step, its own rate measured early, stopped before the deadline).

Each returns a record whose ``status`` is ``complete`` (importable as the DAG's run),
``stopped`` (the time box ended it: evidence, never the protocol) or ``failed``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpu_common import log, run_cmd, scnf_cmd, script

EVALUATE_S = 25.0  # kept after training for `scnf evaluate`
RECONSTRUCT_S = 15.0  # kept for `scnf reconstruct` (Fig. 2 runs)
WATCH_EPOCHS = 3  # logged epochs before the training's own rate is trusted


def rel_split(name: str, seed: int) -> str:
    """The split's path as the workflow names it (relative to its working directory)."""
    return f"results/{name}/splits/mnist/seed{seed}.json"


def split_file(work: Path, name: str, seed: int, data_dir: str) -> str:
    """``rel_split`` below ``work``, written by ``scnf splits`` if missing."""
    rel = rel_split(name, seed)
    if not (work / rel).is_file():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        cmd = scnf_cmd("splits", "--dataset", "mnist", "--seed", str(seed), "--out", rel)
        rc, _, err = run_cmd([*cmd, "--data-dir", data_dir], 300, cwd=work)
        if rc != 0:
            raise RuntimeError(f"splits failed: {err[-2000:]}")
    return rel


def parse_key(key: str) -> tuple[str, str, int | None]:
    """``mnist/<variant>/seed<S>`` or ``baseline/<model>[/seed<S>]`` -> (family, name, seed)."""
    parts = key.split("/")
    seed = int(parts[2][4:]) if len(parts) == 3 else None
    return parts[0], parts[1], seed


def scnf_settings(cfg: dict[str, Any], key: str, data_dir: str, no_compile: bool) -> dict[str, Any]:
    """The run's RUN.yaml settings as the workflow composes them, with this machine's data
    folder (a data location, not a protocol key)."""
    dataset, variant, seed = parse_key(key)
    s = script("experiment_grid").run_settings(cfg, dataset, variant, seed)
    s["data"]["dir"] = data_dir
    if no_compile:
        s["train"]["compile"] = False  # how, not what: not a protocol key either
    return s


def total_steps(settings: dict[str, Any]) -> int:
    t = settings["train"]
    per_epoch = math.ceil((settings["data"]["num_train"] or 60_000) / t["batch_size"])
    steps = t["epochs"] * per_epoch
    return steps if t["max_steps"] is None else min(steps, t["max_steps"])


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _projection(entries: list[dict[str, Any]], steps: int) -> float | None:
    """Seconds the training still needs at the rate of its logged epochs after the first."""
    if len(entries) < WATCH_EPOCHS:
        return None
    if "wall_s" in entries[0]:
        done = entries[-1]["wall_s"] - entries[0]["wall_s"]
    else:
        done = sum(e["seconds"] for e in entries[1:])
    rate = (entries[-1]["step"] - entries[0]["step"]) / max(done, 1e-9)
    return (steps - entries[-1]["step"]) / max(rate, 1e-9)


def train_watched(
    cmd: list[str], run_dir: Path, steps: int, end: float, cwd: Path | None = None
) -> dict[str, Any]:
    """``scnf train`` in its own process group, stopped when its own rate projects an end past
    ``end`` (a perf_counter time) or when ``end`` comes. ``run_dir`` as seen from here."""
    out, err = run_dir.parent / f"{run_dir.name}.stdout", run_dir.parent / f"{run_dir.name}.stderr"
    log(" ".join(cmd[1:]))
    t0 = time.perf_counter()
    stopped, projected = None, None
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, cwd=cwd, start_new_session=True)
        while proc.poll() is None:
            time.sleep(0.5)
            now = time.perf_counter()
            projected = _projection(read_log(run_dir / "train_log.jsonl"), steps)
            if now >= end:
                stopped = f"time box: still training at {now - t0:.0f} s"
            elif projected is not None and now + projected > end:
                stopped = f"projected to need {projected:.0f} s more, {end - now:.0f} s left"
            if stopped:
                log(f"stopping training: {stopped}")
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                break
    return {
        "returncode": proc.returncode,
        "wall_s": time.perf_counter() - t0,
        "stopped": stopped,
        "projected_s_at_stop": projected if stopped else None,
        "stdout_tail": out.read_text()[-2000:],
        "stderr_tail": err.read_text()[-3000:],
    }


def scnf_run(
    settings: dict[str, Any],
    run_dir: Path,
    split: str | Path,
    deadline: float,
    recon_images: int | None,
    on_update: Any = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Train, evaluate once and (``recon_images``) reconstruct one SCNF run in ``run_dir``
    (``run_dir`` and ``split`` relative to ``cwd`` when given); ``on_update(record)`` after
    each step, so that a caller can save what it has so far."""
    here = run_dir if cwd is None else cwd / run_dir
    here.mkdir(parents=True, exist_ok=True)
    written = script("run_config").write_run_config(settings, str(split), here / "RUN.yaml")
    rec: dict[str, Any] = {
        "status": "failed",
        "config": written,
        "split_labelled": json.loads(Path(cwd or ".", split).read_text())["labelled"],
    }
    if on_update:
        on_update(rec)
    keep = EVALUATE_S + (RECONSTRUCT_S if recon_images else 0.0)
    cmd = scnf_cmd("train", "--config", str(run_dir / "RUN.yaml"), "--out", str(run_dir))
    steps = total_steps(settings)
    rec.update(train_watched([*cmd, "--no-final-eval"], here, steps, deadline - keep, cwd))
    rec["log"] = read_log(here / "train_log.jsonl")
    tm_file = here / "train_metrics.json"
    rec["train_metrics"] = json.loads(tm_file.read_text()) if tm_file.exists() else None
    steady = sorted(e["images_per_s"] for e in rec["log"][1:] if "images_per_s" in e)
    rec["steady_images_per_s"] = steady[len(steady) // 2] if steady else None
    if on_update:
        on_update(rec)
    if rec["stopped"] or rec["returncode"] != 0:
        rec["status"] = "stopped" if rec["stopped"] else "failed"
        log(f"training {rec['status']} (rc {rec['returncode']}):\n{rec['stderr_tail'][-1500:]}")
        return rec
    t0 = time.perf_counter()
    evaluate = scnf_cmd("evaluate", "--run", str(run_dir), "--out", str(run_dir / "metrics.json"))
    rc, out, err = run_cmd(evaluate, deadline - time.perf_counter() - 2, cwd=cwd)
    rec["evaluate_wall_s"] = time.perf_counter() - t0
    if rc != 0:
        log(f"evaluate failed (rc {rc}):\n{err[-1500:]}")
        return rec
    rec["metrics"] = json.loads((here / "metrics.json").read_text())
    log(out.strip())
    if on_update:
        on_update(rec)
    if recon_images:
        t0 = time.perf_counter()
        recon = scnf_cmd("reconstruct", "--run", str(run_dir), "--out", str(run_dir / "recon.npz"))
        rc, _, err = run_cmd(
            [*recon, "--num-images", str(recon_images)], deadline - time.perf_counter() - 2, cwd
        )
        rec["reconstruct_returncode"] = rc
        rec["reconstruct_wall_s"] = time.perf_counter() - t0
        if rc != 0:
            log(f"reconstruct failed (rc {rc}):\n{err[-1500:]}")
            return rec  # a Fig. 2 run without its array is not the DAG's run
    rec["status"] = "complete"
    return rec


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    """The current directory is ``folder`` for the block (the baselines train in-process)."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def baseline_run(
    cfg: dict[str, Any], key: str, work: Path, results: Path, data_dir: str, deadline: float
) -> dict[str, Any]:
    """Train one baseline of ``key`` (``baseline/m1``, ``baseline/<m2|m1m2>/seed<S>``) into
    ``work/results/<name>/runs/<key>``; M1+M2 reads M1 from there, copied from ``results``."""
    import torch

    from scnf.baselines.config import m1_config_from_dict, m2_config_from_dict
    from scnf.baselines.graphed import FastOptions
    from scnf.baselines.train import train_m1, train_m2

    name = cfg["name"]
    _, model, seed = parse_key(key)
    rel = f"results/{name}/runs/{key}"
    rec: dict[str, Any] = {"status": "failed"}
    t0 = time.perf_counter()
    try:
        split = None if seed is None else split_file(work, name, seed, data_dir)
        m1_rel = f"results/{name}/runs/baseline/m1" if model == "m1m2" else None
        if m1_rel and not (work / m1_rel / "model.pt").is_file():
            src = results / name / "runs" / "baseline" / "m1"
            if not (src / "model.pt").is_file():
                raise FileNotFoundError(
                    f"M1+M2 needs M1's weights, {src / 'model.pt'}: import the M1 job first "
                    "(and carry the file to the device if git ignores it)"
                )
            (work / m1_rel).mkdir(parents=True, exist_ok=True)
            for f in ("model.pt", "config.yaml"):
                shutil.copy2(src / f, work / m1_rel / f)
        settings = script("experiment_grid").baseline_settings(cfg, model, seed, split, m1_rel)
        settings["data"]["dir"] = data_dir
        (work / rel).mkdir(parents=True, exist_ok=True)
        (work / rel / "BASELINE.json").write_text(json.dumps(settings) + "\n")
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        fast = FastOptions(device=dev, graph=dev == "cuda", deadline=deadline)
        log(f"{key}: training on {dev} (time box ends in {deadline - time.perf_counter():.0f} s)")
        with inside(work):
            if model == "m1":
                result = train_m1(m1_config_from_dict(settings), rel, fast=fast)
            else:
                result = train_m2(m2_config_from_dict(settings), rel, fast=fast)
    except Exception:  # noqa: BLE001 - recorded; the job goes on with its next run
        rec.update(wall_s=time.perf_counter() - t0, error=traceback.format_exc()[-3000:])
        log(f"{key} failed:\n{rec['error'][-1500:]}")
        return rec
    run = result["fast"]
    rec.update(
        status="complete" if run["complete"] else "stopped",
        stopped=None if run["complete"] else run["reason"],
        wall_s=time.perf_counter() - t0,
        train_wall_s=result["train_wall_s"],
        fast=run,
        steps=result["steps"],
        metrics={k: result.get(k) for k in ("test_error", "test_elbo", "train_error")},
        log=read_log(work / rel / "train_log.jsonl"),
    )
    log(f"{key}: {rec['status']}, {run}")
    return rec
