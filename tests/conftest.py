"""Shared fixtures: float64 by default where tests ask for it, deterministic seeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

TINY_MNIST = dict(steps_per_level=1, hidden=8, head_steps=2, head_hidden=16)
TINY_TOY = dict(flow_steps=2, flow_hidden=16, ffjord_hidden=16, head_steps=2, head_hidden=16)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The offline MNIST copy (``$SCNF_DATA_DIR`` or ``<repo>/../shared/data``), verified once."""
    candidates = [
        os.environ.get("SCNF_DATA_DIR"),
        Path(__file__).resolve().parents[2] / "shared/data",
    ]
    for cand in candidates:
        if cand and (Path(cand) / "MNIST" / "raw").is_dir():
            from scnf.data import verify_mnist

            verify_mnist(cand)
            return Path(cand)
    pytest.skip("no offline MNIST copy found ($SCNF_DATA_DIR or ../shared/data)")


@pytest.fixture(scope="module")
def moons_split(tmp_path_factory) -> Path:
    """A moons label split with 5 labelled points per class (split seed 0)."""
    from scnf.data import make_label_split, make_toy, save_split

    path = tmp_path_factory.mktemp("split") / "moons-seed0.json"
    _, y = make_toy("moons", "train")
    save_split(path, make_label_split(y, 5, 0), y, 0, "moons")
    return path


def tiny_toy_run(split: Path, **train) -> dict:
    """The tiny toy run config of the training tests: 16 steps per epoch, checkpoints every 4;
    ``train`` overrides its train section."""
    return {
        "dataset": "moons",
        "preset": "toy-glow-glow",
        "split": str(split),
        "seed": 3,
        "model": dict(TINY_TOY),
        "train": {"optimizer": "adam", "lr": 3e-3, "weight_decay": 0.0, "batch_size": 64,
                  "epochs": 2, "checkpoint_every": 4, "monitor_every": 1, "monitor_size": 300,
                  "progress": False, "device": "cpu", **train},
    }  # fmt: skip


def perturb_(module: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    """Move every parameter off its (often zero / identity) initialisation."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def tiny_model(preset: str, **kw):
    import scnf

    base = TINY_MNIST if preset.startswith("mnist") else TINY_TOY
    return scnf.make_model(preset, **{**base, **kw})
