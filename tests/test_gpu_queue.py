"""The GPU queue (issue 22) on the CPU: pick, refuse, run, import, and the DAG's verdict on it.

One module fixture runs four jobs of config/gpu_queue.yaml with ``--tiny --no-compile`` (the
session job, a Table 3 size, M1, and a seed's M1+M2 and M2) into a temporary results folder and
imports each, as the device session and the machine here would. ``--tiny`` is h200.yaml's tiny
variant (``gpu_common.TINY_CONFIG``, named h200-tiny): a workflow config of its own, so the
tests ask Snakemake about it (real dry runs, and one real rebuild of the tables) exactly as
about the real one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_import  # noqa: E402
import gpu_queue as gq  # noqa: E402
from gpu_common import script, workflow_config  # noqa: E402

H200 = REPO / "config" / "h200.yaml"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "SCNF_GIT_COMMIT": "declared-commit"}
JOBS = ("session-glow-sgd-s0", "zf784-s0", "baseline-m1", "baseline-s0")
TRAINING_RULES = ("run_config", "train_mnist", "evaluate_mnist", "reconstruct",
                  "baseline_m1", "baseline_m2", "baseline_m1m2")  # fmt: skip


# Hang guards, many times the work (a tiny job takes 2-3 minutes on an idle core): a loaded
# machine may run a job several times slower, and must not fail a test for it.
HANG_GUARD_S = 1800


def _cli(*args: str | Path, timeout: int = HANG_GUARD_S) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "benchmarks/gpu_session.py", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def _snakemake(work: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Snakemake on the tiny config (``work/h200-tiny.yaml``) and ``args`` in ``work``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile",
           str(work / "h200-tiny.yaml"), *map(str, args), "--directory", str(work)]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S)


def planned(output: str) -> list[tuple[str, str]]:
    """(rule, output paths) of every job a dry run lists."""
    jobs, rule = [], None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            rule = m.group(1)
        m = re.match(r"^\s+output: (.*)$", line)
        if m and rule:
            jobs.append((rule, m.group(1)))
    return jobs


def training_of(jobs: list[tuple[str, str]], key: str) -> list[str]:
    """Rules that would (re)train or re-evaluate run ``key``."""
    return [r for r, out in jobs if r in TRAINING_RULES and f"/runs/{key}/" in out]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, real_dir: Path) -> dict[str, Any]:
    """Four jobs run and imported in order into ``<work>/results``; each job's --out folder."""
    root = tmp_path_factory.mktemp("gpu-queue")
    tiny = workflow_config(H200, tiny=True)
    (root / "h200-tiny.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    outs, procs = {}, {}
    for job in JOBS:
        out = root / f"out-{job}"
        pick = [] if job == JOBS[0] else ["--job", job]  # the first one is picked by `next`
        args = ["--out", out, "--data-dir", real_dir, "--results", root / "results"]
        procs[job] = _cli("next", *args, "--budget", "3000", "--tiny", "--no-compile", *pick)
        assert procs[job].returncode == 0, procs[job].stdout[-3000:] + procs[job].stderr[-3000:]
        imp = _cli("import", out, "--workdir", root, "--allow-tiny")
        assert imp.returncode == 0, imp.stdout + imp.stderr
        outs[job] = out
    return {"root": root, "outs": outs, "procs": procs}


def _session(work: dict[str, Any], job: str) -> dict[str, Any]:
    return json.loads((work["outs"][job] / "session.json").read_text())


# --- the queue file ----------------------------------------------------------------------------


def test_queue_covers_the_h200_grid_in_the_issues_order() -> None:
    q = gq.load()
    assert q.config_file == H200 and gq.check(q) == []  # runs known, minutes up to date
    cfg = q.cfg
    runs = [k for j in q.jobs for k in j.runs]
    assert sorted(runs) == sorted(gq.grid_keys(cfg))  # every run of the DAG, once
    order = [j.id for j in q.jobs]
    assert order[:3] == ["session-glow-sgd-s0", "glow-sgd-s1", "glow-sgd-s2"]
    assert order[3:6] == [f"gmm-sgd-s{s}" for s in range(3)]
    assert order[6:10] == [f"zf{z}-s0" for z in (784, 392, 98, 49)]
    assert order[18:22] == ["baseline-m1", "baseline-s0", "baseline-s1", "baseline-s2"]
    assert all("em-sgd" in j for j in order[22:]) and len(order) == 34
    for job in q.jobs:
        fits = gq.job_s(q, job) <= q.budget_s
        assert fits == ("em-sgd" not in job.id), job.id  # the EM-SGD rows do not fit (yet)
        assert job.measured == (job.kind != "baseline"), job.id
    assert gq.baseline_steps(cfg, "baseline/m1") == 3000 * 600
    assert gq.baseline_steps(cfg, "baseline/m2/seed0") == 3000 * 100


def test_next_refuses_a_job_that_overruns_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _cli("next", "--out", out, "--results", tmp_path / "results", "--budget", "300")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "refused before starting: session-glow-sgd-s0" in proc.stderr
    assert not out.exists()  # nothing written, nothing run
    proc = _cli("next", "--out", out, "--results", tmp_path / "results", "--job",
                "glow-em-sgd-s0")  # fmt: skip
    assert proc.returncode == 3 and "glow-em-sgd-s0" in proc.stderr and not out.exists()


# --- running jobs --------------------------------------------------------------------------------


def test_next_runs_the_first_job_then_picks_the_one_after(work: dict[str, Any]) -> None:
    s = _session(work, "session-glow-sgd-s0")
    assert s["job"]["id"] == "session-glow-sgd-s0" and s["job"]["kind"] == "session"
    assert s["provenance"]["commit"]  # from git here, from SCNF_GIT_COMMIT on the device's copy
    assert [r["status"] for r in s["runs"]] == ["complete"]
    assert s["bench"]["eager-fp32"]["cost_ratio"] > 0
    assert s["bpd_check"]["trained"]["abs_diff"] < 2e-3
    assert s["targets"]["test_error"]["value"] == s["runs"][0]["metrics"]["test_error"]
    for job, out in work["outs"].items():
        files = {p.name for p in out.iterdir()}
        assert files == {"session.json", "session.log", "results.tar.gz"}, job
        assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
    # the session job's run is imported: `next` now picks job 2 (refused here: budget 50 s)
    results, never = work["root"] / "results", work["root"] / "never"
    proc = _cli("next", "--out", never, "--results", results, "--budget", "50", "--tiny")
    assert proc.returncode == 3 and "refused before starting: glow-sgd-s1 " in proc.stderr
    assert not never.exists()
    status = _cli("status", "--results", results, "--tiny").stdout.splitlines()
    assert status[0].startswith("h200.yaml: 30 jobs left (4 done)")  # the four run here
    assert status[1].startswith("glow-sgd-s1 ") and "session-glow-sgd-s0" not in "".join(status)


def test_each_job_kind_writes_what_its_import_needs(work: dict[str, Any]) -> None:
    scnf = ["RUN.yaml", "train_log.jsonl", "train_metrics.json", "metrics.json"]
    base = ["BASELINE.json", "config.yaml", "train_log.jsonl", "train_metrics.json",
            "metrics.json"]  # fmt: skip
    expect = {
        "session-glow-sgd-s0": {"mnist/glow-sgd-zf196/seed0": [*scnf, "recon.npz"]},
        "zf784-s0": {"mnist/glow-sgd-zf784/seed0": [*scnf, "recon.npz"]},  # Fig. 2's array
        "baseline-m1": {"baseline/m1": [*base, "model.pt"]},  # M1+M2 needs M1's weights
        "baseline-s0": {"baseline/m1m2/seed0": base, "baseline/m2/seed0": base},
    }
    for job, runs in expect.items():
        with tarfile.open(work["outs"][job] / "results.tar.gz") as tar:
            names = set(tar.getnames())
        want = {f"results/h200-tiny/runs/{k}/{f}" for k, fs in runs.items() for f in fs}
        if job != "baseline-m1":
            want.add("results/h200-tiny/splits/mnist/seed0.json")
        assert names == want, job


def test_import_writes_the_runs_as_the_workflow_does(work: dict[str, Any], tmp_path: Path) -> None:
    cfg, grid = workflow_config(H200, tiny=True), script("experiment_grid")
    res = work["root"] / "results" / "h200-tiny"
    split = "results/h200-tiny/splits/mnist/seed0.json"
    for variant in ("glow-sgd-zf196", "glow-sgd-zf784"):
        ours = tmp_path / variant / "RUN.yaml"
        script("run_config").write_run_config(
            grid.run_settings(cfg, "mnist", variant, 0), split, ours
        )
        assert (res / "runs/mnist" / variant / "seed0/RUN.yaml").read_text() == ours.read_text()
        tsv = (res / "benchmarks/train/mnist" / variant / "seed0.tsv").read_text().splitlines()
        assert tsv[0].split("\t")[0] == "s" and float(tsv[1].split("\t")[0]) > 0
        assert (res / "benchmarks/evaluate/mnist" / variant / "seed0.tsv").is_file()
    m1_dir = "results/h200-tiny/runs/baseline/m1"
    for key, args in {"baseline/m1": ("m1",), "baseline/m2/seed0": ("m2", 0, split),
                      "baseline/m1m2/seed0": ("m1m2", 0, split, m1_dir)}.items():  # fmt: skip
        text = (res / "runs" / key / "BASELINE.json").read_text()
        assert text == json.dumps(grid.baseline_settings(cfg, *args)) + "\n", key
    ledger = json.loads((res / "gpu_imports.json").read_text())["runs"]
    assert set(ledger) == {"mnist/glow-sgd-zf196/seed0", "mnist/glow-sgd-zf784/seed0",
                           "baseline/m1", "baseline/m1m2/seed0", "baseline/m2/seed0"}  # fmt: skip
    assert ledger["baseline/m1"]["commit"] == _session(work, "baseline-m1")["provenance"]["commit"]
    assert (work["root"] / ledger["baseline/m1"]["session"]).is_file()


# --- the DAG's verdict ---------------------------------------------------------------------------


def test_dry_run_plans_training_only_for_runs_still_missing(work: dict[str, Any]) -> None:
    root = work["root"]
    imported = list(json.loads((root / "results/h200-tiny/gpu_imports.json").read_text())["runs"])
    # A clone keeps no file times: put them in reverse DAG order, as a bad checkout could.
    res, now = root / "results" / "h200-tiny", time.time()
    for key in imported:
        for i, stage in enumerate(gpu_import._outputs(res, key)):
            for f in stage:
                if f.exists():
                    os.utime(f, (now - 100 * i, now - 100 * i))
    jobs = planned(_snakemake(root, "-n").stdout)
    if (REPO / "workflow/scripts/run_records.py").is_file():
        # The workflow judges a run by its records (run_records.py): the imported runs
        # recorded the config's protocol, so file times cannot make them look stale ...
        assert not [k for k in imported if training_of(jobs, k)]
    else:  # ... without that, the file times decide, and this order retrains ...
        assert training_of(jobs, "mnist/glow-sgd-zf196/seed0")
    # ... and `import --restamp` puts them back in DAG order either way.
    assert _cli("import", "--restamp", "--workdir", root).returncode == 0
    proc = _snakemake(root, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned(proc.stdout)
    for key in imported:
        assert training_of(jobs, key) == [], key
    for key in ("mnist/glow-sgd-zf196/seed1", "mnist/gmm-sgd-zf196/seed0",
                "mnist/glow-sgd-zf392/seed0", "baseline/m2/seed1"):  # fmt: skip
        assert training_of(jobs, key), key
    assert any(r == "reconstruct" and "glow-sgd-zf392/seed0" in out for r, out in jobs)


def test_the_overlay_rebuilds_tables_and_report_without_training(work: dict[str, Any]) -> None:
    root = work["root"]
    overlay = root / "results/h200-tiny/imported.yaml"
    over = yaml.safe_load(overlay.read_text())
    assert over["seeds"] == [0] and over["families"] == ["mnist", "baseline"]
    assert over["mnist"]["table2"] == [{"head": "glow", "mode": "sgd", "clf": False}]
    assert over["mnist"]["table3"]["zf_dims"] == [196, 784]
    assert over["baseline"]["models"] == ["m2", "m1m2"]
    dry = _snakemake(root, overlay, "-n")
    assert dry.returncode == 0 and not [r for r, _ in planned(dry.stdout) if r in TRAINING_RULES]
    # Table 1's toy limits are the paper config's, and computing them takes minutes.
    shutil.copy2(REPO / "results/paper/toy_limits.json", root / "results/h200-tiny/toy_limits.json")
    proc = _snakemake(root, overlay, "--cores", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = {r for r, _ in planned(proc.stdout + proc.stderr)}
    assert not ran & set(TRAINING_RULES) and {"table", "fig2", "report"} <= ran
    res = root / "results/h200-tiny"
    table2 = (res / "tables/table2.md").read_text()
    assert re.search(r"\| scnf-glow \| sgd \| no \| \d", table2)
    assert re.search(r"\| scnf-gmm \| sgd \| no \| — .* not run", table2)
    assert (res / "figures/fig2.png").is_file() and (res / "REPORT.md").is_file()


# --- import guards and the baselines' fast path ----------------------------------------------


def test_a_stopped_run_is_evidence_only(work: dict[str, Any], tmp_path: Path) -> None:
    fetched = tmp_path / "fetched"
    shutil.copytree(work["outs"]["baseline-s0"], fetched)
    s = json.loads((fetched / "session.json").read_text())
    s["runs"][1].update(status="stopped", stopped="deadline: ...")  # baseline/m2/seed0
    (fetched / "session.json").write_text(json.dumps(s))
    out = gpu_import.import_fetched(fetched, tmp_path / "w", allow_tiny=True)
    assert out["imported"] == ["baseline/m1m2/seed0"] and out["evidence_only"] == [
        "baseline/m2/seed0"
    ]
    assert not (tmp_path / "w/results/h200-tiny/runs/baseline/m2").exists()
    assert (out["evidence"] / "baseline/m2/seed0/metrics.json").is_file()
    with pytest.raises(SystemExit, match="--tiny"):
        gpu_import.import_fetched(fetched, tmp_path / "w2")


def test_import_refuses_a_recipe_other_than_the_dags() -> None:
    """Only the data location and how the run ran (compile, monitors) may differ."""
    cfg, grid = workflow_config(H200), script("experiment_grid")
    split = "results/h200/splits/mnist/seed0.json"
    dag = {**grid.run_settings(cfg, "mnist", "glow-sgd-zf196", 0), "split": split}
    device = json.loads(json.dumps(dag))
    device["data"]["dir"], device["train"]["compile"] = "/root/.gpu/data", False
    assert gpu_import._differences(dag, device) == []
    device["train"]["lr"], device["split"] = 2e-3, "/tmp/x/split.json"
    assert gpu_import._differences(dag, device) == [
        f"split: DAG {split!r} != device '/tmp/x/split.json'",
        "train.lr: DAG 0.001 != device 0.002",
    ]


def _tiny_m2(split: Path, real_dir: Path):
    from scnf.baselines.config import m2_config_from_dict

    data = {"dir": str(real_dir), "num_train": 400, "num_test": 200}
    train = {"hidden": 32, "latent": 4, "labelled_batch": 4, "unlabelled_batch": 32,
             "checkpoint_every": 4, "epochs": 3, "progress": False}  # fmt: skip
    return m2_config_from_dict({"split": str(split), "data": data, "train": train})


def test_fast_path_on_the_cpu_is_the_cpu_loop(
    tmp_path: Path, work: dict[str, Any], real_dir: Path
) -> None:
    """scnf.baselines.graphed without a GPU: the weights, log and metrics of the plain loop."""
    from scnf.baselines.graphed import FastOptions
    from scnf.baselines.train import train_m2

    cfg = _tiny_m2(work["root"] / "results/h200-tiny/splits/mnist/seed0.json", real_dir)
    plain = train_m2(cfg, tmp_path / "plain")
    fast = train_m2(cfg, tmp_path / "fast", fast=FastOptions(device="cpu", graph=False))
    a = torch.load(tmp_path / "plain/model.pt", weights_only=True)
    b = torch.load(tmp_path / "fast/model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert fast["test_error"] == plain["test_error"] and fast["steps"] == plain["steps"]
    assert fast["fast"]["complete"] is True and fast["fast"]["path"] == "eager-cpu"
    assert "fast" not in plain  # the CPU path's metrics.json is as before

    def entries(run: str) -> list[dict]:
        lines = (tmp_path / run / "train_log.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]

    assert entries("plain") == entries("fast")


def test_the_time_box_stops_a_run_and_says_so(
    tmp_path: Path, work: dict[str, Any], real_dir: Path
) -> None:
    """A deadline already passed: the run stops after its first epoch, recorded as such."""
    from scnf.baselines.graphed import FastOptions
    from scnf.baselines.train import train_m2

    cfg = _tiny_m2(work["root"] / "results/h200-tiny/splits/mnist/seed0.json", real_dir)
    fast = FastOptions(device="cpu", graph=False, deadline=time.perf_counter(), reserve_s=0.0)
    result = train_m2(cfg, tmp_path / "boxed", fast=fast)
    run = result["fast"]
    assert run["complete"] is False and run["reason"].startswith("deadline")
    per_epoch = run["total_steps"] // 3
    assert result["steps"] == run["steps"] == per_epoch and result["epochs"] == 1.0
    train = json.loads((tmp_path / "boxed/train_metrics.json").read_text())
    assert train["steps"] == per_epoch


# Before the GPU path was added (commit 2f5d9ca, torch 2.14.1 on this project's CPU machine, one
# thread as `python -m scnf` sets it): sha256 (first 16 hex) of the final weights of tiny M1,
# M2 and M1+M2 runs, and their figures.
BEFORE = {"m1": ("d3d511bed33310bd", -557.4792407226563),
          "m2": ("5ffaa035329303c0", 89.5), "m1m2": ("9b9cb54bc760ae53", 90.0)}  # fmt: skip


def _digest(run: Path) -> str:
    import hashlib

    weights, h = torch.load(run / "model.pt", weights_only=True), hashlib.sha256()
    for k in sorted(weights):
        h.update(k.encode())
        h.update(weights[k].numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.skipif(torch.__version__ != "2.14.1+cu130", reason="digests of torch 2.14.1's CPU")
def test_the_cpu_baselines_train_as_before(
    tmp_path: Path, work: dict[str, Any], real_dir: Path
) -> None:
    """scnf.baselines' CPU path gives the weights it gave before the GPU path was added."""
    split = str(work["root"] / "results/h200-tiny/splits/mnist/seed0.json")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the sums' order, as the digests were taken
    try:
        got = _three_baselines(tmp_path, split, real_dir)
    finally:
        torch.set_num_threads(threads)
    assert got == BEFORE


def _three_baselines(tmp_path: Path, split: str, real_dir: Path) -> dict[str, tuple]:
    from scnf.baselines.config import m1_config_from_dict, m2_config_from_dict
    from scnf.baselines.train import train_m1, train_m2

    m1 = train_m1(m1_config_from_dict({
        "data": {"dir": str(real_dir), "num_train": 300, "num_test": 100},
        "train": {"hidden": [16], "latent": 4, "epochs": 2, "batch_size": 50,
                  "checkpoint_every": 3, "progress": False}}), tmp_path / "m1")  # fmt: skip
    data = {"dir": str(real_dir), "num_train": 400, "num_test": 200}
    m2 = train_m2(m2_config_from_dict({"split": split, "data": data, "train": {
        "hidden": 32, "latent": 4, "labelled_batch": 4, "unlabelled_batch": 32,
        "checkpoint_every": 4, "max_steps": 10, "progress": False}}), tmp_path / "m2")  # fmt: skip
    m12 = train_m2(m2_config_from_dict({"model": "m1m2", "split": split, "data": data,
        "m1_run": str(tmp_path / "m1"), "train": {"hidden": 16, "latent": 3, "max_steps": 5,
        "labelled_batch": 4, "unlabelled_batch": 16, "active_std": 0.0, "progress": False}}),
        tmp_path / "m1m2")  # fmt: skip
    return {"m1": (_digest(tmp_path / "m1"), m1["test_elbo"]),
            "m2": (_digest(tmp_path / "m2"), m2["test_error"]),
            "m1m2": (_digest(tmp_path / "m1m2"), m12["test_error"])}  # fmt: skip
