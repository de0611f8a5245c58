"""Atomic checkpoints and loading a trained run back."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from scnf.model import SCNF
from scnf.presets import make_model
from scnf.train.config import RunConfig, load_run_config

CHECKPOINT = "checkpoint.pt"  # resumable training state, rewritten every `checkpoint_every` steps
FINAL_MODEL = "model.pt"  # final weights
RUN_CONFIG = "config.yaml"  # the resolved run config, copied into the run directory
TRAIN_LOG = "train_log.jsonl"  # one JSON line per epoch
TRAIN_METRICS = "train_metrics.json"  # written last: its presence marks a finished run


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, fsync, then rename: a kill never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def move_aside(out_dir: Path, names: Iterable[str], changes: Iterable[str] = ()) -> Path:
    """Move the files ``names`` of ``out_dir`` into a new ``superseded-<UTC time>[-k]/``.

    The suffix keeps two runs superseded within the same second apart; nothing is overwritten.
    ``changes`` (``config_changes``) are printed on stderr, so a user sees why.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside, k = out_dir / f"superseded-{stamp}", 1
    while aside.exists():
        k += 1
        aside = out_dir / f"superseded-{stamp}-{k}"
    aside.mkdir()
    for name in names:
        if (out_dir / name).exists():
            (out_dir / name).rename(aside / name)
    lines = "".join(f"\n  {c}" for c in changes)
    print(f"protocol changed: moved the old run of {out_dir} to {aside}{lines}", file=sys.stderr)
    return aside


_ABSENT = object()


def config_changes(old: Any, new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs between two config dicts."""
    if not isinstance(old, dict):
        return [f"the old config is unreadable or not a mapping ({old!r})"]
    out = []
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {_text(a)} -> {_text(b)}")
    return out


def _text(value: Any) -> str:
    return "(absent)" if value is _ABSENT else repr(value)


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any] | None:
    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location=device, weights_only=False)


def build_model(cfg: RunConfig) -> SCNF:
    return make_model(cfg.preset, **cfg.model)


def load_trained(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[SCNF, RunConfig]:
    """The final model of a finished run (in eval mode) and its run config."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir / RUN_CONFIG)
    weights = run_dir / FINAL_MODEL
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: has `scnf train --out {run_dir}` finished?")
    model = build_model(cfg)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.to(device).eval(), cfg
