"""The toy recipe tools in benchmarks/: run configs the CLI accepts, the KDE reference, summary."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from scnf.train.config import run_config_from_dict

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("candidate", sorted(_load("toy_recipe_runs").CANDIDATES))
def test_every_candidate_is_a_valid_run_config(candidate: str, tmp_path: Path) -> None:
    runs = _load("toy_recipe_runs")
    raw = runs.run_config(candidate, "moons", "toy-glow-gmm", 1, tmp_path / "split.json")
    cfg = run_config_from_dict(raw)  # raises on an unknown key or a wrong type
    assert cfg.train.labelled_fraction == runs.CANDIDATES[candidate]["train"]["labelled_fraction"]
    assert cfg.seed == 1


def test_kde_reference_matches_a_known_entropy() -> None:
    """KDE of N(0, I) in 2-D tends to N(0, (1 + h^2) I): its NLL to that cross-entropy."""
    kde = _load("toy_kde_reference")
    g = torch.Generator().manual_seed(0)
    train = torch.randn(20000, 2, generator=g, dtype=torch.float64)
    val = torch.randn(4000, 2, generator=g, dtype=torch.float64)
    h = 0.3
    nll = kde.kde_nll(train, val, h)
    s2 = 1 + h * h  # E_p[-log N(x | 0, s2 I)] for x ~ N(0, I) in 2-D
    expected = math.log(2 * math.pi * s2) + 1 / s2
    assert abs(nll - expected) < 0.05
    # A far too small bandwidth overfits the sample: a much worse held-out NLL.
    assert kde.kde_nll(train, val, 0.005) > nll + 0.5


def test_summary_reports_mean_and_std_over_seeds(tmp_path: Path) -> None:
    summary = _load("toy_recipe_summary")
    runs = {
        f"c/moons/p/seed{s}": {
            "candidate": "c", "dataset": "moons", "preset": "p", "seed": s,
            "curve": [{"step": 10, "val_error": 9.0, "val_nll": 9.0},
                      {"step": 20, "val_error": float(s), "val_nll": 1.0 + s / 10}],
        }
        for s in (0, 2)
    }  # fmt: skip
    (tmp_path / "runs.json").write_text(json.dumps({"runs": runs, "phases": []}))
    text = summary.table(summary.load(tmp_path))
    row = text.splitlines()[2]
    assert "| c | moons | p | 20 | 0,2 |" in row
    assert "1.00 ± 1.41" in row  # end-of-run errors 0 and 2, not the step-10 monitor
    assert "1.100 ± 0.141" in row
