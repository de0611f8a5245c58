"""The configs in examples/ load with the strict readers and run (a few steps each); the
shipped label splits are what ``scnf splits`` writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scnf.baselines.config import M1M2Config, load_m1_config, load_m2_config
from scnf.baselines.train import train_m1, train_m2
from scnf.cli import main
from scnf.train.config import load_run_config
from scnf.train.loop import train

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True)
def _as_the_cli_runs_them(monkeypatch):
    """From the repository root (the examples' paths are relative to it), on one thread."""
    monkeypatch.chdir(REPO)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_toy_example_trains(tmp_path: Path) -> None:
    cfg = load_run_config(EXAMPLES / "run.yaml")
    assert cfg.dataset == "moons" and cfg.train.lr == 3e-3  # `3e-3`: a string to YAML 1.1
    cfg.train.max_steps, cfg.train.progress = 8, False
    result = train(cfg, tmp_path / "run")
    assert result["steps"] == 8 and 0 <= result["test_error"] <= 100


def test_the_baseline_examples_load() -> None:
    m1 = load_m1_config(EXAMPLES / "m1.json")
    m1m2 = load_m2_config(EXAMPLES / "m1m2.json")
    assert isinstance(m1m2, M1M2Config) and m1m2.m1_run == "runs/example-m1"
    assert m1.data.num_train and m1m2.data.num_train  # small subsets: seconds, not hours
    assert Path(m1m2.split).is_file()


def test_the_baseline_examples_run(tmp_path: Path, real_dir: Path) -> None:
    m1 = load_m1_config(EXAMPLES / "m1.json")
    m1.data.dir, m1.train.max_steps, m1.train.progress = str(real_dir), 3, False
    assert train_m1(m1, tmp_path / "m1")["steps"] == 3
    m1m2 = load_m2_config(EXAMPLES / "m1m2.json")
    m1m2.data.dir, m1m2.m1_run = str(real_dir), str(tmp_path / "m1")
    m1m2.train.max_steps, m1m2.train.progress = 3, False
    m1m2.train.active_std = 0.0  # 3 steps of M1 leave its latent nearly constant: keep it all
    result = train_m2(m1m2, tmp_path / "m1m2")
    assert result["steps"] == 3 and result["run"]["preset"] == "kingma2014-m1m2"


@pytest.mark.parametrize("dataset", ["moons", "mnist"])
def test_the_shipped_splits_are_what_scnf_splits_writes(
    tmp_path: Path, dataset: str, request
) -> None:
    argv = ["splits", "--dataset", dataset, "--seed", "0", "--out", str(tmp_path / "s.json")]
    if dataset == "mnist":
        argv += ["--data-dir", str(request.getfixturevalue("real_dir"))]
    assert main(argv) == 0
    shipped = json.loads((EXAMPLES / f"{dataset}-split-seed0.json").read_text())
    assert json.loads((tmp_path / "s.json").read_text()) == shipped
