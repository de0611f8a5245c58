"""``gpu_session.py next``: run the queue's next job on this machine and pack what it produced.

Writes under --out (the device tool brings back at most 8 files of 16 MiB): ``session.json``
(provenance, the job and its prediction, each run's record: status, wall times, rates,
``recipe_exact``; for the session job also the benchmarks, the bf16 checks and issue 14's
targets), ``session.log`` and ``results.tar.gz``, the runs in the workflow's layout
(``results/<name>/runs/<run>/``, ``results/<name>/splits/``) for ``gpu_session.py import``.
No weights leave the machine except M1's (M1+M2 needs them in a later session).
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import gpu_bench
import gpu_common as common
import gpu_queue as gq
import gpu_runs
from gpu_common import log

SCNF_FILES = ("RUN.yaml", "train_log.jsonl", "train_metrics.json", "metrics.json", "recon.npz")
BASELINE_FILES = ("BASELINE.json", "config.yaml", "train_log.jsonl", "train_metrics.json",
                  "metrics.json")  # fmt: skip
M1_WEIGHTS = "model.pt"  # about 7 MB at the paper's size
MAX_FILE = 16 * 2**20
COMPILED_BENCH_S = 75.0  # the session job's bare compiled-bf16 bench, if this much is left


def run_files(key: str) -> tuple[str, ...]:
    """The files of a run that the import takes in (the workflow's names)."""
    if key == "baseline/m1":
        return (*BASELINE_FILES, M1_WEIGHTS)
    return BASELINE_FILES if key.startswith("baseline/") else SCNF_FILES


def write_session(out: Path, session: dict[str, Any]) -> None:
    if session["job"]["kind"] == "session":
        session["targets"] = gpu_bench.evaluate_targets(session)
    session["total_wall_s"] = time.perf_counter() - common.START
    (out / "session.json").write_text(json.dumps(session, indent=1, default=str))


def pack(root: Path, out: Path, records: list[dict[str, Any]], name: str) -> list[str]:
    """``results.tar.gz`` of every run's files (and the splits) below ``root``."""
    members: list[str] = []
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        for split in sorted((root / name / "splits").rglob("*.json")):
            members.append(split.relative_to(root.parent).as_posix())
            tar.add(split, arcname=members[-1])
        for rec in records:
            rdir = root / name / "runs" / rec["key"]
            for f in run_files(rec["key"]):
                if (rdir / f).is_file():
                    members.append((rdir / f).relative_to(root.parent).as_posix())
                    tar.add(rdir / f, arcname=members[-1])
    size = (out / "results.tar.gz").stat().st_size
    if size > MAX_FILE:
        log(f"WARNING: results.tar.gz is {size / 2**20:.1f} MiB, over what comes back")
    return members


def _scnf(a: argparse.Namespace, q: gq.Queue, key: str, work: Path, deadline: float, save):
    cfg = q.cfg
    _, _, seed = gpu_runs.parse_key(key)
    split = gpu_runs.split_file(work, cfg["name"], seed, a.data_dir)
    settings = gpu_runs.scnf_settings(cfg, key, a.data_dir, a.no_compile)
    images = cfg["fig2"]["num_images"] if key in gq.fig2_keys(cfg) else None
    rel = Path("results") / cfg["name"] / "runs" / key
    rec = gpu_runs.scnf_run(settings, rel, split, deadline, images, on_update=save, cwd=work)
    rec["monitor_curve"] = gpu_bench.monitor_curve(rec.get("log", []))
    return rec


def run_job(a: argparse.Namespace, q: gq.Queue, job: gq.Job, missing: list[str]) -> int:
    """Run ``missing`` runs of ``job`` inside ``a.budget`` seconds; 0 when all completed."""
    from scnf.provenance import collect

    cfg = q.cfg
    a.out.mkdir(parents=True, exist_ok=True)
    common.LOG_FILE = a.out / "session.log"
    common.LOG_FILE.write_text("")
    deadline = common.START + a.budget
    work = common.tmp_dir()  # the workflow's working directory, as far as the runs can tell
    root = work / "results"
    session: dict[str, Any] = {
        "what": "benchmarks/gpu_session.py next: one job of the GPU queue (issue 22)",
        "argv": sys.argv,
        "job": {
            "id": job.id,
            "kind": job.kind,
            "runs": job.runs,
            "missing": missing,
            "config": q.config_file.relative_to(common.REPO).as_posix(),
            "predicted_s": gq.job_s(q, job, missing),
            "prediction_measured": job.measured,
        },
        "budget_s": a.budget,
        "tiny": a.tiny,
        "no_compile": a.no_compile,
        "hardware": common.hardware(),
        "provenance": collect({k: str(v) for k, v in vars(a).items()}),
        "runs": [],
    }
    if job.kind == "session":
        session.update(bench={}, bpd_check={})
    if a.tiny:
        session["tiny_config"] = common.TINY_CONFIG
    log(f"job {job.id} ({job.kind}): {', '.join(missing)}; predicted "
        f"{session['job']['predicted_s']:.0f} s of {a.budget:.0f}")  # fmt: skip
    try:
        if job.kind == "session":
            gpu_bench.run_benches(session, ["fp32"], a.tiny, a.no_compile, 60.0)
            session["bpd_check"]["perturbed"] = gpu_bench.bpd_check_perturbed(a.tiny, a.data_dir)
            write_session(a.out, session)
        for key in missing:
            need = gq.run_s(q, cfg, key)
            if need > common.left(a.budget):
                why = f"not started: predicted {need:.0f} s > {common.left(a.budget):.0f} s left"
                session["runs"].append({"key": key, "status": "not started", "stopped": why})
                log(f"{key}: {why}")
                continue
            rec: dict[str, Any] = {"key": key}
            session["runs"].append(rec)

            def save(partial: dict[str, Any], rec=rec) -> None:
                rec.update(partial)
                write_session(a.out, session)

            if key.startswith("baseline/"):
                rec.update(gpu_runs.baseline_run(cfg, key, work, a.results, a.data_dir, deadline))
            else:
                try:
                    rec.update(_scnf(a, q, key, work, deadline, save))
                except Exception as err:  # noqa: BLE001 - recorded; the next run may work
                    rec.update(status="failed", error=repr(err)[-3000:])
                    log(f"{key} failed: {err!r}")
            rec["key"] = key
            rec["predicted_s"] = need
            rec["recipe_exact"] = rec["status"] == "complete"  # the config's whole schedule
            write_session(a.out, session)
        if job.kind == "session":
            _session_extras(a, session, work, Path("results") / cfg["name"] / "runs")
    finally:
        if root.is_dir():
            started = [r for r in session["runs"] if r["status"] != "not started"]
            session["packed"] = pack(root, a.out, started, cfg["name"])
        write_session(a.out, session)
        common.cleanup()
    status = {r["key"]: r["status"] for r in session["runs"]}
    log(f"job {job.id}: {status}")
    return 0 if all(s == "complete" for s in status.values()) else 1


def _session_extras(a: argparse.Namespace, session: dict[str, Any], work: Path, runs: Path) -> None:
    """The session job's measurements after its run: bf16 vs fp32 on the trained weights, the
    bare compiled-bf16 step if time is left, the training loop's own rate in any case."""
    rec = session["runs"][0]
    session["train"] = rec  # evaluate_targets reads the run there
    session["loop_images_per_s"] = rec.get("steady_images_per_s")
    if rec.get("status") == "complete" and common.left(a.budget) > 15:
        try:
            with gpu_runs.inside(work):  # the run's paths are the workflow's, relative
                session["bpd_check"]["trained"] = gpu_bench.bpd_check_trained(runs / rec["key"])
        except Exception as err:  # noqa: BLE001 - a measurement, not the run: recorded
            session["bpd_check"]["trained_error"] = repr(err)[-2000:]
            log(f"bpd check (trained) failed: {err!r}")
    if common.left(a.budget) > COMPILED_BENCH_S or a.tiny:
        budget = common.left(a.budget) - 10
        gpu_bench.run_benches(session, ["fast"], a.tiny, a.no_compile, budget)
    else:
        log("compiled-bf16 bench skipped: the training loop's rate stands in (loop_images_per_s)")


def main_next(a: argparse.Namespace) -> int:
    q = gq.load(a.queue, a.tiny)
    a.data_dir = str(Path(a.data_dir).resolve())  # the runs work in a scratch folder
    picked = gq.next_job(q, a.results, a.job)
    if picked is None:
        print("the queue is done: every job's results are in", a.results)
        return 0
    job, missing = picked
    if not missing:
        print(f"{job.id}: every run is in {a.results} already")
        return 0
    predicted = gq.job_s(q, job, missing)
    if predicted > a.budget:
        print(
            f"refused before starting: {job.id} ({', '.join(missing)}) is predicted at "
            f"{predicted:.0f} s > --budget {a.budget:.0f} s"
            f"{'' if job.measured else ' (unmeasured prediction)'}; see config/gpu_queue.yaml",
            file=sys.stderr,
        )
        return 3
    return run_job(a, q, job, missing)
