"""The workflow itself on a real (local, single-node) SLURM cluster, through its SLURM profile.

A shrunken smoke DAG (one toy run, one MNIST run: every rule kind still runs once) goes through
``--profile workflow/profiles/slurm``. The tests check that every non-local job was submitted
with sbatch, that only the MNIST training / evaluation jobs asked for a GPU and went to the
``gpu`` partition, that the tables equal those of a local run of the same configuration, and
that a training job cancelled mid-run fails the workflow without leaving outputs that look
complete, after which a rerun does only the missing work.

Each SLURM job costs about 7 s of Snakemake start-up and the node has 2 CPUs, so the DAG is
cut down with a config overlay; the smoke config's MNIST jobs ask for no GPU, the overlay asks
for one so that the GPU path is exercised (the cluster's GPUs are fake). Every wait is bounded.
"""

from __future__ import annotations

import csv
import math
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from cluster import REPO_ROOT, sbatch_lines, sbatch_options, sbatch_rule, snakemake_command

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

SNAKEFILE = REPO_ROOT / "Snakefile"
SMOKE = REPO_ROOT / "config" / "smoke.yaml"
NAME = "slurm-smoke"
# One toy and one MNIST run (Table 2's glow/sgd row is Table 3's z_f = 196 run): every rule runs.
SHRINK = """
toy:
  datasets: [moons]
  flows: [glow]
  heads: [gmm]
mnist:
  table2:
    - {head: glow, mode: sgd, clf: false}
  table3:
    zf_dims: [196]
resources:
  train:
    mnist: {threads: 1, mem_mb: 2000, runtime: 5, gpu: 1}
  evaluate:
    mnist: {threads: 1, mem_mb: 2000, runtime: 5, gpu: 1}
"""
# The fault case: MNIST training long enough (300 steps, ~10 s on a CPU core) to be cancelled
# mid-run, with a checkpoint every 25 steps: the test cancels it after the first one, and the
# rerun resumes from the last.
LONG_MNIST_STEPS = 300
LONG_MNIST = f"""
mnist:
  train:
    epochs: 100
    max_steps: {LONG_MNIST_STEPS}
    checkpoint_every: 25
"""
MNIST_RUN = "runs/mnist/glow-sgd-zf196/seed0"
TOY_RUN = "runs/moons/glow-gmm/seed0"
JOBS = {
    "splits": 2, "run_config": 2, "train_toy": 1, "train_mnist": 1, "evaluate_toy": 1,
    "evaluate_mnist": 1, "reconstruct": 1, "toy_plots": 1, "baseline_m1": 1, "baseline_m2": 1,
    "baseline_m1m2": 1, "toy_limits": 1, "runs": 1, "table": 3, "curves": 3, "fig2": 1,
    "claims": 1, "report": 1, "all": 1,
}  # fmt: skip
LOCAL_RULES = {
    "all", "run_config", "runs", "toy_limits", "table", "curves", "fig2", "claims", "report"
}  # fmt: skip
# (workflow/rules/common.smk)
GPU_RULES = {"train_mnist", "evaluate_mnist"}
# What the rerun after the cancelled MNIST training has left to do (the toy run, its plot and
# curves, the baselines and the limits were finished by the first run, which keeps going after
# a failure; runs.csv, hence every table, waits for the MNIST run).
RERUN_JOBS = {
    "train_mnist": 1, "evaluate_mnist": 1, "reconstruct": 1, "runs": 1, "table": 3,
    "curves": 2, "fig2": 1, "claims": 1, "report": 1, "all": 1,
}  # fmt: skip
# First status poll after 6 s (the profile's 10 s is for real clusters); while no job has
# finished the plugin waits 10 s longer each time (6, 22, 48 s after a submission), and a job
# here takes 15-20 s (7 s of it Snakemake's start-up), so 6 s catches most at the second poll.
# The plugin polls with squeue only while MinJobAge (300 s in the test cluster) >= 3 x this.
INIT_POLL_S = 6
# Guards against a hang (e.g. status polling stuck on sacct), not speed limits: a run takes 3-5
# minutes on 2 idle cores and several times that on a loaded machine.
SLURM_RUN_TIMEOUT_S = 3600
LOCAL_RUN_TIMEOUT_S = 3600
CANCEL_WAIT_S = 1800
_SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
_SLURM_LOG_RULE = re.compile(r"/slurm_logs/rule_(\w+)/")


def _env() -> dict[str, str]:
    """Jobs call ``python -m scnf``: this interpreter's bin/ first (sbatch exports it)."""
    bin_dir = Path(sys.executable).parent
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def _workdir(tmp: Path, *overlays: str) -> tuple[Path, list[str]]:
    """A fresh working directory and the ``--configfile`` / ``--config`` arguments for it."""
    tmp.mkdir(parents=True, exist_ok=True)
    files = []
    for i, text in enumerate(overlays):
        path = tmp / f"overlay{i}.yaml"
        path.write_text(text)
        files.append(str(path))
    data_dir = (REPO_ROOT / yaml.safe_load(SMOKE.read_text())["data_dir"]).resolve()
    args = ["--configfile", str(SMOKE), *files, "--config", f"name={NAME}", f"data_dir={data_dir}"]
    return tmp, args


def _slurm_cmd(workdir: Path, config_args: list[str], *extra: str) -> list[str]:
    return snakemake_command(
        SNAKEFILE,
        workdir,
        *config_args,
        "--slurm-init-seconds-before-status-checks",
        str(INIT_POLL_S),
        *extra,
    )


def _local_cmd(workdir: Path, config_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
            "--directory", str(workdir), "--cores", "2", *config_args]  # fmt: skip


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def _run(cmd: list[str], timeout_s: float, what: str) -> tuple[int, str]:
    """Run ``cmd`` to completion within ``timeout_s``; fail the test clearly if it hangs."""
    try:
        proc = subprocess.run(
            cmd, env=_env(), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as err:  # subprocess.run has SIGKILLed it
        out = _text(err.stdout) + _text(err.stderr)
        pytest.fail(f"{what} hung: killed after {timeout_s} s. Last output:\n{out[-5000:]}")
    return proc.returncode, proc.stdout + proc.stderr


@contextmanager
def _background(cmd: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` running with its output in ``log_path``; SIGKILLed on exit if still running."""
    with open(log_path, "wb") as log_fh:
        proc = subprocess.Popen(cmd, env=_env(), stdout=log_fh, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()  # Snakemake may ignore SIGTERM while polling
                proc.wait(timeout=30)


def _wait(proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float, what: str) -> int:
    """The exit status of ``proc`` within ``timeout_s``; fail the test clearly if it hangs."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} hung: no exit within {timeout_s} s. Last output:\n"
                    f"{log_path.read_text()[-5000:]}")  # fmt: skip


def job_counts(log: str) -> dict[str, int]:
    """The first ``Job stats`` table of a Snakemake log as {rule: count}, without the total."""
    match = re.search(r"Job stats:\njob\s+count\n[-\s]+\n(.*?)\n\n", log, re.S)
    assert match, log[-3000:]
    counts = dict(line.split() for line in match.group(1).splitlines())
    counts.pop("total")
    return {rule: int(n) for rule, n in counts.items()}


def submitted_rules(log: str) -> Counter[str]:
    """How many jobs of each rule Snakemake reports as submitted to SLURM."""
    rules = Counter()
    for _jobid, slurm_log in _SUBMITTED.findall(log):
        match = _SLURM_LOG_RULE.search(slurm_log)
        assert match, slurm_log
        rules[match.group(1)] += 1
    return rules


def config_resources(rule: str) -> dict[str, int]:
    """A rule's entry in the test's ``resources:`` (smoke config with the overlay on top)."""
    resources = yaml.safe_load(SMOKE.read_text())["resources"]
    overlay = yaml.safe_load(SHRINK)["resources"]
    if rule.endswith(("_toy", "_mnist")):  # per-family rules: train_toy -> train.toy
        step, family = rule.rsplit("_", 1)
        return overlay.get(step, {}).get(family) or resources[step][family]
    return resources[rule]


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def same_cell(a: str, b: str) -> bool:
    """Equal strings, or numbers equal within 1e-6 relative."""
    try:
        x, y = float(a), float(b)
    except ValueError:
        return a == b
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-12)


def assert_same_tables(slurm_dir: Path, local_dir: Path) -> None:
    for table in ("table1", "table2", "table3"):
        a = read_csv(slurm_dir / "tables" / f"{table}.csv")
        b = read_csv(local_dir / "tables" / f"{table}.csv")
        assert a[0] == b[0] and len(a) == len(b), (table, a, b)
        for row_a, row_b in zip(a[1:], b[1:], strict=True):
            assert len(row_a) == len(row_b), (table, row_a, row_b)
            diff = [(h, x, y) for h, x, y in zip(a[0], row_a, row_b) if not same_cell(x, y)]
            assert not diff, f"{table} row {row_a[:3]} differs (column, slurm, local): {diff}"


def test_smoke_dag_on_slurm_matches_local_run(
    slurm_cluster: dict[str, object], tmp_path: Path
) -> None:
    assert slurm_cluster["partitions"] == ["cpu", "gpu"]  # the profile's defaults
    slurm_wd, slurm_args = _workdir(tmp_path / "slurm", SHRINK)
    local_wd, local_args = _workdir(tmp_path / "local", SHRINK)
    t0 = time.monotonic()
    rc, log = _run(_slurm_cmd(slurm_wd, slurm_args), SLURM_RUN_TIMEOUT_S, "SLURM run")
    t_slurm = time.monotonic() - t0
    (slurm_wd / "snakemake.log").write_text(log)  # kept with the temp dir for inspection
    assert rc == 0, log[-6000:]
    # Status came from squeue: without accounting, a fallback to sacct would hang.
    assert "command=squeue" in log and "command=sacct" not in log
    assert "Falling back to 'sacct'" not in log

    # Every job ran, and exactly the non-local ones went through sbatch.
    assert job_counts(log) == JOBS
    remote = {rule: n for rule, n in JOBS.items() if rule not in LOCAL_RULES}
    assert submitted_rules(log) == remote
    local_jobs = Counter(re.findall(r"^localrule (\w+):", log, re.M))
    assert local_jobs == {rule: JOBS[rule] for rule in LOCAL_RULES}
    calls = sbatch_lines(log)
    assert Counter(sbatch_rule(c) for c in calls) == remote

    # GPU rules: --gpus=1 on partition gpu; every other rule: partition cpu, no GPU at all.
    for call in calls:
        rule, opts = sbatch_rule(call), sbatch_options(call)
        if rule in GPU_RULES:
            assert " -p gpu " in opts and "--gpus=1" in opts, call
        else:
            assert " -p cpu " in opts, call
            assert "--gpus" not in opts and "--gres" not in opts, call
        # Wall time, memory and CPUs are the config's (the profile sets only the partition).
        spec = config_resources(rule)
        assert f" -t {spec['runtime']} --mem {spec['mem_mb']} " in opts, (spec, call)
        assert f" --cpus-per-task={spec['threads']} " in opts, (spec, call)

    out = slurm_wd / "results" / NAME
    report = (out / "REPORT.md").read_text()
    # Timings come from the benchmark files of both families' train / evaluate rules.
    for step in ("train", "evaluate"):
        for run in ("mnist/glow-sgd-zf196", "moons/glow-gmm"):
            assert f"| {step} {run} (1 seed) |" in report, report[-2000:]

    # The same configuration run locally gives the same tables. (Run after the SLURM run, not
    # beside it: both are CPU-bound on 2 cores, so that would save no time.)
    t0 = time.monotonic()
    rc, local_log = _run(_local_cmd(local_wd, local_args), LOCAL_RUN_TIMEOUT_S, "local run")
    print(f"SLURM run {t_slurm:.0f} s, local run {time.monotonic() - t0:.0f} s")
    assert rc == 0, local_log[-6000:]
    assert job_counts(local_log) == JOBS
    assert_same_tables(out, local_wd / "results" / NAME)


def _squeue_state(jobid: str) -> str:
    proc = subprocess.run(
        ["squeue", "-h", "-j", jobid, "-o", "%T"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.stdout.strip()


def _cancel_training_once_checkpointed(
    proc: subprocess.Popen[bytes], log_path: Path, run_dir: Path
) -> str:
    """Wait for the MNIST training job to run and write a checkpoint, then scancel it.

    Returns its SLURM job id. Fails the test when that does not happen in ``CANCEL_WAIT_S``.
    """
    deadline = time.monotonic() + CANCEL_WAIT_S
    jobid = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"snakemake ended before the training job could be cancelled:\n"
                        f"{log_path.read_text()[-5000:]}")  # fmt: skip
        if jobid is None:
            for job, slurm_log in _SUBMITTED.findall(log_path.read_text()):
                if "/rule_train_mnist/" in slurm_log:
                    jobid = job
        if (
            jobid is not None
            and (run_dir / "checkpoint.pt").is_file()
            and _squeue_state(jobid) == "RUNNING"
        ):
            subprocess.run(["scancel", jobid], timeout=30, check=True)
            return jobid
        time.sleep(0.5)
    pytest.fail(
        f"the MNIST training job (SLURM id {jobid}) was not running with a checkpoint within "
        f"{CANCEL_WAIT_S} s:\n{log_path.read_text()[-5000:]}"
    )


def test_cancelled_training_fails_cleanly_and_rerun_completes(
    slurm_cluster: dict[str, object], tmp_path: Path
) -> None:
    workdir, args = _workdir(tmp_path / "fault", SHRINK, LONG_MNIST)
    out = workdir / "results" / NAME
    log_path = workdir / "first.log"
    # No automatic retry (the profile allows one): the cancellation must surface as a failure.
    cmd = _slurm_cmd(workdir, args, "--retries", "0")
    with _background(cmd, log_path) as proc:
        jobid = _cancel_training_once_checkpointed(proc, log_path, out / MNIST_RUN)
        rc = _wait(proc, log_path, SLURM_RUN_TIMEOUT_S, "SLURM run after the cancellation")
    first = log_path.read_text()
    assert rc != 0, first[-4000:]
    assert "Error in rule train_mnist" in first, first[-4000:]
    assert f"SLURM-job '{jobid}' failed, SLURM status is: 'CANCELLED'" in first, first[-4000:]
    # Nothing of the cancelled run looks complete; its checkpoint stays for the rerun.
    assert not (out / MNIST_RUN / "train_metrics.json").exists()
    assert not (out / MNIST_RUN / "model.pt").exists()
    assert (out / MNIST_RUN / "checkpoint.pt").is_file()
    # The independent toy chain finished all the same (keep-going).
    toy_model = out / TOY_RUN / "model.pt"
    assert (out / TOY_RUN / "metrics.json").is_file() and toy_model.is_file()
    assert (out / "figures" / "curves" / "table1.png").is_file()
    toy_mtime = toy_model.stat().st_mtime_ns

    rc, rerun = _run(cmd, SLURM_RUN_TIMEOUT_S, "snakemake rerun on SLURM")
    (workdir / "rerun.log").write_text(rerun)
    assert rc == 0, rerun[-6000:]
    assert job_counts(rerun) == RERUN_JOBS
    assert submitted_rules(rerun) == {r: n for r, n in RERUN_JOBS.items() if r not in LOCAL_RULES}
    assert toy_model.stat().st_mtime_ns == toy_mtime  # the finished toy run was not retrained
    train_log = (out / "logs" / "train" / "mnist" / "glow-sgd-zf196" / "seed0.log").read_text()
    resumed = re.search(rf"resuming \S+ from step ([1-9]\d*)/{LONG_MNIST_STEPS}\n", train_log)
    assert resumed, train_log[-2000:]  # from the cancelled job's checkpoint
    assert (out / MNIST_RUN / "train_metrics.json").is_file()
    assert (out / "REPORT.md").is_file()
