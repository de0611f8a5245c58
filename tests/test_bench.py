"""The benchmark runs on a tiny preset and prints every figure it promises (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_runs_on_a_tiny_preset(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scnf",
            "bench",
            "--preset",
            "mnist-gmm",
            "--batch-size",
            "8",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--model",
            "steps_per_level=1",
            "hidden=8",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,  # a hang guard: seconds on an idle core, far more on a starved one
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    printed = (
        "train_images_per_s",
        "eval_images_per_s",
        "cost_ratio",
        "naive_cost_ratio",
        "train_gflop_per_image",
        "peak_memory_gib",
        "device",
        "precision",
    )
    for key in printed:
        assert key in result and key in proc.stdout, key
    assert "commit" in result["provenance"]
    assert result["parameters"] > 0 and result["train_images_per_s"] > 0
    # The naive fully conditional model runs f_w K = 10 times: far costlier than one pass.
    assert result["naive_cost_ratio"] > 3 * result["cost_ratio"]
