"""The CPU benchmarks (benchmarks/cpu_step.py, cpu_estep.py) run at tiny settings, write every
figure they promise, and their fast variants give the plain variant's numbers (no timing asserts).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HANG_GUARD_S = 1800  # seconds on an idle core (mostly compilation), far more on a starved one


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_cpu_step_bench_runs_and_its_variants_agree(tmp_path: Path) -> None:
    out = tmp_path / "step.json"
    args = ["--sizes", "cpu-gmm-196", "--threads", "1", "--batch-size", "6"]
    _run("cpu_step.py", *args, "--blocks", "1", "--steps", "1", "--out", str(out))
    result = json.loads(out.read_text())
    assert "commit" in result["provenance"]
    (row,) = result["results"]
    assert row["parameters"] > 0 and row["threads"] == 1
    assert set(row["variants"]) == {"eager-plain", "eager-fast", "compiled-fast"}
    for name, v in row["variants"].items():
        assert v["images_per_cpu_s"] > 0 and v["share_of_core_peak"] > 0, name
        assert row["loss_rel_diff_vs_plain"][name] < 1e-4, name  # float32 rounding only
    # The fast layers do less arithmetic than the plain ones, never more.
    assert row["gflop_per_image"]["fast"] <= row["gflop_per_image"]["plain"]


@pytest.mark.slow
def test_cpu_estep_bench_runs_and_compiled_equals_eager(tmp_path: Path) -> None:
    out = tmp_path / "estep.json"
    args = ["--presets", "mnist-gmm", "--batch-size", "8", "--rounds", "1", "--batches", "1"]
    _run("cpu_estep.py", *args, "--out", str(out))
    result = json.loads(out.read_text())
    assert "commit" in result["provenance"]
    (row,) = result["results"]
    assert row["preset"] == "mnist-gmm" and row["speedup"] > 0
    assert set(row["estep_cpu_s"]) == {"eager", "compiled"}
    assert row["max_rel_diff"] < 1e-4  # float32 rounding only
