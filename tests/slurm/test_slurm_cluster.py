"""Tests of the SLURM test infrastructure: log parsing, and the profile on a real cluster."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import cluster
import pytest
from cluster import sbatch_lines, sbatch_options, sbatch_rule, skip_reason, snakemake_command

GPU_CALL = (
    "sbatch --parsable --job-name abc --output /w/.snakemake/slurm_logs/rule_train_mnist/"
    "mnist_glow-sgd-zf196_0/%j.log --export=ALL --comment "
    "rule_train_mnist_wildcards_mnist_glow-sgd-zf196_0   -p gpu -t 5 --mem 2000 "
    '--cpus-per-task=1 -D /w --gpus=1 --wrap="python -m snakemake --target-jobs '
    "'train_mnist:dataset=mnist,variant=glow-sgd-zf196,seed=0'\""
)
CPU_CALL = (
    "sbatch --parsable --job-name abc --output /w/.snakemake/slurm_logs/rule_summarize/%j.log "
    "--export=ALL --comment rule_summarize   -p cpu -t 60 --mem 2000 --ntasks=1 "
    '--cpus-per-task=1 -D /w --wrap="python -m snakemake --gpus=9"'
)


def test_sbatch_lines_parses_debug_and_error_forms() -> None:
    log = "\n".join(
        [
            "Building DAG of jobs...",
            f"sbatch call: {GPU_CALL}",
            "Job 3 has been submitted with SLURM jobid 6 (log: x.log).",
            "Error in rule summarize:",
            "    sbatch call:",
            f"        {CPU_CALL}",
        ]
    )
    assert sbatch_lines(log) == [GPU_CALL, CPU_CALL]
    assert sbatch_lines("Job 3 has been submitted with SLURM jobid 6") == []


def test_sbatch_rule_and_options() -> None:
    assert sbatch_rule(GPU_CALL) == "train_mnist"
    assert sbatch_rule(CPU_CALL) == "summarize"
    assert sbatch_rule("sbatch -p cpu") is None
    # The wrapped command may mention --gpus; only the sbatch options count.
    assert "--gpus" not in sbatch_options(CPU_CALL)
    assert "--gpus=1" in sbatch_options(GPU_CALL)


def test_skip_reason_names_missing_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster.sys, "platform", "linux")
    monkeypatch.setattr(cluster.os, "geteuid", lambda: 1000)
    assert "root" in (skip_reason() or "")
    monkeypatch.setattr(cluster.sys, "platform", "darwin")
    assert "Linux" in (skip_reason() or "")


def test_skip_reason_needs_slurm_or_apt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster.sys, "platform", "linux")
    monkeypatch.setattr(cluster.os, "geteuid", lambda: 0)
    monkeypatch.setattr(cluster.shutil, "which", lambda *_a, **_k: None)
    assert "apt-get" in (skip_reason() or "")
    monkeypatch.setattr(cluster.shutil, "which", lambda name, **_k: f"/usr/bin/{name}")
    assert skip_reason() is None


DUMMY_SNAKEFILE = """
rule all:
    input:
        "results/summary.txt",


# Named like the workflow's GPU rule: the profile routes `train_mnist` to the gpu partition.
rule train_mnist:
    output:
        "results/model_{seed}.txt",
    resources:
        gpu=1,
    shell:
        "echo gpus=${{CUDA_VISIBLE_DEVICES:-none}} part=${{SLURM_JOB_PARTITION}} > {output}"


rule summarize:
    input:
        expand("results/model_{seed}.txt", seed=[0, 1]),
    output:
        "results/summary.txt",
    shell:
        "cat {input} > {output}; "
        "echo cpu gpus=${{CUDA_VISIBLE_DEVICES:-none}} part=${{SLURM_JOB_PARTITION}} >> {output}"
"""


@pytest.mark.slow
@pytest.mark.slurm
def test_profile_routes_gpu_rule_to_gpu_partition(
    slurm_cluster: dict[str, object], tmp_path: Path
) -> None:
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(textwrap.dedent(DUMMY_SNAKEFILE))
    proc = subprocess.run(
        snakemake_command(snakefile, tmp_path, "-j", "4"),
        capture_output=True,
        text=True,
        timeout=1800,  # a hang guard (three tiny jobs take under a minute on an idle machine)
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    calls = {}
    for line in sbatch_lines(log):
        calls.setdefault(sbatch_rule(line), []).append(sbatch_options(line))
    assert sorted(calls) == ["summarize", "train_mnist"], calls
    assert len(calls["train_mnist"]) == 2
    for opts in calls["train_mnist"]:
        assert " -p gpu " in opts and "--gpus=1" in opts
    (cpu_opts,) = calls["summarize"]
    assert " -p cpu " in cpu_opts and "--gpus" not in cpu_opts and "--gres" not in cpu_opts
    summary = (tmp_path / "results" / "summary.txt").read_text().splitlines()
    # Each training job saw one (fake) GPU of the gpu partition; the CPU job saw none.
    assert all(re.fullmatch(r"gpus=[01] part=gpu", line) for line in summary[:2]), summary
    assert summary[2] == "cpu gpus=none part=cpu"


def test_running_cluster_always_runs_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing test body, or a failed start, still stops the daemons (no cluster needed)."""
    calls: list[str] = []

    def fake_run_script(script: Path, env: dict[str, str], timeout_s: float) -> str:
        calls.append(script.name)
        if script.name == "cluster_up.sh" and fail_up:
            raise RuntimeError("slurmctld did not answer")
        return ""

    monkeypatch.setattr(cluster, "_run_script", fake_run_script)
    monkeypatch.setenv("SLURM_CONF", "/site/slurm.conf")
    fail_up = False
    with pytest.raises(AssertionError, match="test body failed"):
        with cluster.running_cluster() as info:
            assert cluster.os.environ["SLURM_CONF"] == info["slurm_conf"]
            raise AssertionError("test body failed")
    assert calls == ["cluster_up.sh", "cluster_down.sh"]
    assert cluster.os.environ["SLURM_CONF"] == "/site/slurm.conf"  # restored
    calls.clear()
    fail_up = True
    with pytest.raises(RuntimeError, match="slurmctld"):
        with cluster.running_cluster():
            pytest.fail("body must not run when the cluster did not come up")
    assert calls == ["cluster_up.sh", "cluster_down.sh"]
