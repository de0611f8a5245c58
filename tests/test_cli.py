"""The command line: help text for every option, --version, one torch thread by default
(--threads before or after the command), $SCNF_DATA_DIR as the default data dir, bench's CPU
time; float keys that YAML reads as strings; MNIST hints in the words of CLI or workflow."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
import yaml

import scnf
from scnf import cli
from scnf.baselines.config import load_m1_config
from scnf.data.mnist import MNISTDataError, load_mnist
from scnf.train import ConfigError, run_config_from_dict
from scnf.train.config import load_run_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _keep_threads():
    """cli.main sets torch's thread count; give the rest of the session its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_option_has_help_and_the_description_is_plain(capsys) -> None:
    parser = cli.build_parser()
    for name, sub in {"scnf": parser, **_subparsers(parser)}.items():
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"
        assert "--threads" in sub.format_help(), name
    assert "``" not in parser.format_help()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"scnf {scnf.__version__}"


@pytest.mark.parametrize(
    "before,after,expected",
    [([], [], [1]), (["--threads", "2"], [], [2]), ([], ["--threads", "3"], [3]),
     (["--threads", "2"], ["--threads", "3"], [3]), (["--threads", "0"], [], [])],
)  # fmt: skip
def test_one_torch_thread_unless_asked(
    tmp_path: Path, monkeypatch, before: list, after: list, expected: list
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    out = tmp_path / "s.json"
    argv = [*before, "splits", "--dataset", "moons", "--seed", "0", "--out", str(out), *after]
    assert cli.main(argv) == 0 and out.is_file()
    assert calls == expected


def test_negative_threads_are_refused() -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--threads", "-1", "toy-limits", "--out", "x"])


def test_splits_reads_scnf_data_dir(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SCNF_DATA_DIR", str(tmp_path / "empty"))
    out = tmp_path / "s.json"
    assert cli.main(["splits", "--dataset", "mnist", "--seed", "0", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "empty") in err and not out.exists()
    # an explicit --data-dir wins
    explicit = tmp_path / "explicit"
    argv = ["splits", "--dataset", "mnist", "--seed", "0", "--out", str(out), "--data-dir"]
    assert cli.main([*argv, str(explicit)]) == 1
    assert str(explicit) in capsys.readouterr().err


def _toy_run_yaml(path: Path, split: Path, data: dict | None) -> Path:
    raw = {
        "dataset": "moons",
        "preset": "toy-glow-gmm",
        "split": str(split),
        "model": {"flow_steps": 2, "flow_hidden": 8},
        "train": {"batch_size": 250, "epochs": 1, "max_steps": 2, "monitor_size": 50,
                  "progress": False, "device": "cpu"},
    }  # fmt: skip
    if data is not None:
        raw["data"] = data
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_run_config_without_data_dir_reads_scnf_data_dir(tmp_path: Path, monkeypatch) -> None:
    split = tmp_path / "split.json"
    assert cli.main(["splits", "--dataset", "moons", "--seed", "0", "--out", str(split)]) == 0
    monkeypatch.setenv("SCNF_DATA_DIR", "/from/the/environment")
    implicit = _toy_run_yaml(tmp_path / "a.yaml", split, None)
    explicit = _toy_run_yaml(tmp_path / "b.yaml", split, {"dir": "/written/in/the/config"})
    for cfg_path, expected in (
        (implicit, "/from/the/environment"),
        (explicit, "/written/in/the/config"),
    ):
        run = tmp_path / cfg_path.stem
        assert cli.main(["train", "--config", str(cfg_path), "--out", str(run)]) == 0
        assert load_run_config(run / "config.yaml").data.dir == expected
    monkeypatch.delenv("SCNF_DATA_DIR")
    cfg = load_run_config(implicit)
    cli._env_data_dir(cfg, implicit)
    assert cfg.data.dir == "../shared/data"  # the config default, untouched


def test_float_keys_accept_decimal_strings(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "dataset: moons\npreset: toy-glow-glow\nsplit: s.json\n"
        "train: {lr: 1e-3, grad_clip: 5e1, betas: [9e-1, 0.999], weight_decay: 1E-5}\n"
    )
    assert yaml.safe_load(path.read_text())["train"]["lr"] == "1e-3"  # YAML 1.1
    t = load_run_config(path).train
    assert (t.lr, t.grad_clip, t.betas, t.weight_decay) == (1e-3, 50.0, [0.9, 0.999], 1e-5)
    assert all(isinstance(v, float) for v in (t.lr, t.grad_clip, *t.betas))
    base = {"dataset": "moons", "preset": "toy-glow-glow", "split": "s.json"}
    for bad in ({"lr": "fast"}, {"lr": "nan"}, {"lr": "1e-3x"}, {"epochs": "1e3"}):
        with pytest.raises(ConfigError, match="train."):
            run_config_from_dict({**base, "train": bad})
    m1 = tmp_path / "m1.yaml"
    m1.write_text("train: {lr: 3e-4, weight_decay: 1.7e-5}\n")
    assert load_m1_config(m1).train.lr == 3e-4


def test_bench_reports_cpu_time_beside_wall_time(capsys) -> None:
    argv = ["bench", "--preset", "toy-glow-gmm", "--batch-size", "16", "--steps", "2"]
    argv += ["--warmup", "1", "--device", "cpu", "--skip-ratio", "--model", "flow_steps=1"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "train_step_ms" in out and "train_step_cpu_ms" in out


@pytest.mark.parametrize("where,words,not_words", [
    (None, ["data.dir", "--data-dir", "SCNF_DATA_DIR", "data.download: true"], ["--config"]),
    ("workflow", ["data_dir", "--config download=true"], ["data.dir", "--data-dir"]),
])  # fmt: skip
def test_mnist_hint_speaks_the_callers_language(
    tmp_path: Path, monkeypatch, where, words, not_words
) -> None:
    if where is None:
        monkeypatch.delenv("SCNF_DATA_HINT", raising=False)
    else:
        monkeypatch.setenv("SCNF_DATA_HINT", where)
    with pytest.raises(MNISTDataError, match="missing") as err:
        load_mnist(tmp_path, train=True)
    hint = str(err.value).splitlines()[1]
    assert all(w in hint for w in words) and not any(w in hint for w in not_words), hint


def test_the_workflow_step_that_reads_mnist_first_asks_for_the_workflow_hint() -> None:
    splits = (REPO / "workflow" / "rules" / "splits.smk").read_text()
    assert '"SCNF_DATA_HINT=workflow python -m scnf' in splits
