"""The GPU session script runs end to end on the CPU (tiny model), so it is ready when a GPU is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_session_script_runs_on_cpu(tmp_path: Path, real_dir: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SCNF_GIT_COMMIT": "declared-commit"}
    cmd = [sys.executable, "benchmarks/gpu_session.py", "--out", str(out)]
    cmd += ["--data-dir", str(real_dir), "--budget", "150", "--train-reserve", "40"]
    cmd += ["--tiny", "--no-compile"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    session = json.loads((out / "session.json").read_text())
    assert session["provenance"]["commit"]  # from git here, from SCNF_GIT_COMMIT on a copy
    for name in ("eager-fp32", "eager-tf32", "eager-bf16"):
        assert session["bench"][name]["train_images_per_s"] > 0, name
    fp32 = session["bench"]["eager-fp32"]
    assert fp32["cost_ratio"] > 0 and fp32["naive_cost_ratio"] > 0
    assert session["bpd_check"]["abs_diff"] < 0.002
    targets = session["targets"]
    assert set(targets) == {
        "train_images_per_s >= 10 x anchor (8,200)",
        "cost_ratio <= 1.3",
        "naive_cost_ratio >= 8",
        "bf16 vs fp32 bits/dim < 0.002",
    }
    assert all(t["value"] is not None for t in targets.values())
    assert targets["bf16 vs fp32 bits/dim < 0.002"]["met"] is True
    train = session["train"]
    assert train["metrics"]["steps"] == 20 and 0 <= train["metrics"]["test_error"] <= 100  # percent
    assert train["config"]["train"]["mode"] == "sgd"
    # at most 8 small files come back from the device tool; no weights among them
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8 and not any(f.endswith(".pt") for f in files), files
    assert "phase 5" in (out / "session.log").read_text()
