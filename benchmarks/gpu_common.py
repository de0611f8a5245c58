"""Helpers shared by the GPU session scripts: clock, log, subprocesses, the workflow's config.

The device tool runs one command of at most 10 minutes; every script here counts its time from
the moment this module is imported (``START``) and logs progress lines with that clock, to
stdout and to ``LOG_FILE`` once a caller sets it.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

START = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIG = REPO / "config" / "config.yaml"
LOG_FILE: Path | None = None  # set by the entry point once --out exists
_TMP: list[Path] = []  # this process's scratch folder, once asked for


def tmp_dir() -> Path:
    """A scratch folder for runs and weights, which never reach --out (``cleanup`` removes it)."""
    if not _TMP:
        _TMP.append(Path(tempfile.mkdtemp(prefix="gpu-session-")))
    return _TMP[0]


def cleanup() -> None:
    if _TMP:
        shutil.rmtree(_TMP.pop(), ignore_errors=True)


def left(budget: float) -> float:
    """Seconds left of ``budget`` counted from ``START``."""
    return budget - (time.perf_counter() - START)


def log(msg: str) -> None:
    line = f"[{time.perf_counter() - START:7.1f}s] {msg}"
    print(line, flush=True)
    if LOG_FILE is not None:
        with LOG_FILE.open("a") as fh:
            fh.write(line + "\n")


def scnf_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "scnf", *args]


def run_cmd(cmd: list[str], timeout: float, cwd: Path | None = None) -> tuple[int | None, str, str]:
    """(returncode or None on timeout, stdout, stderr) of a subprocess."""
    log(" ".join(cmd[1:]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 5), cwd=cwd)
        return proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else err.stdout or ""
        errs = err.stderr.decode() if isinstance(err.stderr, bytes) else err.stderr or ""
        return None, out, errs + f"\nTIMED OUT after {timeout:.0f}s"


def script(name: str) -> ModuleType:
    """``workflow/scripts/<name>.py``: the workflow's own code composes run configs."""
    key = f"_wf_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, REPO / "workflow" / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """What Snakemake does with --configfile on top of the Snakefile's config/config.yaml."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            deep_merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def workflow_config(config_file: Path, tiny: bool = False) -> dict[str, Any]:
    """``config_file`` merged over config/config.yaml, as the DAG sees it (``tiny``: then
    ``TINY_CONFIG`` over that, named ``<name>-tiny``)."""
    cfg = deep_merge(
        yaml.safe_load(PAPER_CONFIG.read_text()), yaml.safe_load(Path(config_file).read_text())
    )
    return deep_merge(cfg, {**TINY_CONFIG, "name": f"{cfg['name']}-tiny"}) if tiny else cfg


# --tiny: what changes against the recipe, so that a CPU run takes seconds (sizes and lengths;
# nothing that decides how a model learns).
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "model": {"steps_per_level": 1, "hidden": 16, "head_steps": 2, "head_hidden": 32},
    # 320 images + the labelled ones beyond them: 14 steps of 32 per epoch, so 24 steps end in
    # the second epoch and both epochs are monitored.
    "data": {"num_train": 320, "num_test": 300},
    "train": {
        "batch_size": 32,
        "max_steps": 24,
        "warmup_steps": 4,
        "checkpoint_every": 12,
        "monitor_every": 1,
        "monitor_size": 200,
    },
    "eval": {"batch_size": 256},
}
TINY_BASELINE: dict[str, dict[str, Any]] = {
    "data": {"num_train": 400, "num_test": 200},
    "m1": {"hidden": [16], "latent": 4, "epochs": 2, "batch_size": 50},
    "m2": {"hidden": 32, "latent": 4, "epochs": 2, "labelled_batch": 4, "unlabelled_batch": 32},
    "m1m2": {"hidden": 16, "latent": 3, "epochs": 2, "labelled_batch": 4,
             "unlabelled_batch": 16, "active_std": 0.0},
}  # fmt: skip
# The queue's --tiny: a workflow config of its own (its runs are that config's, so the DAG
# judges them as it would judge real ones; tests/test_gpu_queue.py).
TINY_CONFIG: dict[str, Any] = {
    "mnist": {k: TINY_OVERRIDES[k] for k in ("model", "data", "train")},
    "eval": TINY_OVERRIDES["eval"],
    "fig2": {"num_images": 4},
    "baseline": TINY_BASELINE,
}


def hardware() -> dict:
    """GPU name, clocks, memory and driver from nvidia-smi (empty without one)."""
    if shutil.which("nvidia-smi") is None:
        return {}
    fields = "name,driver_version,memory.total,clocks.max.sm,clocks.sm,power.limit"
    proc = subprocess.run(
        ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    values = [v.strip() for v in proc.stdout.splitlines()[0].split(",")] if proc.stdout else []
    return dict(zip(fields.split(","), values, strict=False))
