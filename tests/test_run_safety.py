"""An existing run is set aside only when its protocol changed, and never before the data
are checked: a device, data-location, checkpoint or monitor change resumes the run; a bad MNIST
copy fails and leaves the run untouched; a protocol change names the changed keys."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
import yaml

from scnf.data import make_label_split, save_split
from scnf.data.mnist import MNISTDataError
from scnf.train import loop as loop_mod
from scnf.train import run_config_from_dict
from scnf.train.checkpoint import config_changes
from scnf.train.config import protocol_view
from scnf.train.loop import train
from tests.conftest import TINY_MNIST, tiny_toy_run


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One thread for every run here, the uninterrupted reference included (the same float
    reduction order); tiny models run faster so on a shared machine, and cli.main sets it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _with(raw: dict, change: dict) -> dict:
    """``raw`` with the sections of ``change`` merged in (one level deep)."""
    out = dict(raw)
    for key, value in change.items():
        out[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", weights_only=True)


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, moons_split: Path) -> Path:
    out = tmp_path_factory.mktemp("full")
    train(run_config_from_dict(tiny_toy_run(moons_split, epochs=3)), out)
    return out


NOT_PROTOCOL_CHANGES = {
    "device": {"train": {"device": "auto"}},
    "data-dir": {"data": {"dir": "/nowhere/data", "download": True}},
    "checkpoint_every": {"train": {"checkpoint_every": 3}},
    "monitors": {"train": {"monitor_every": 2, "monitor_every_steps": 5, "monitor_size": 100}},
    "name": {"name": "renamed"},
}


@pytest.mark.parametrize("change", NOT_PROTOCOL_CHANGES.values(), ids=NOT_PROTOCOL_CHANGES)
def test_a_change_outside_the_protocol_resumes_the_run(
    tmp_path: Path,
    moons_split: Path,
    uninterrupted: Path,
    change: dict,
    capsys,
    monkeypatch,
) -> None:
    # device: auto stays on the CPU here, so the weights can be compared bit for bit.
    monkeypatch.setattr(loop_mod, "resolve_device", lambda requested: torch.device("cpu"))
    raw = tiny_toy_run(moons_split, epochs=3)
    with pytest.raises(loop_mod._Interrupt):
        train(run_config_from_dict(raw), tmp_path, stop_after_step=10)  # checkpoint at step 8
    capsys.readouterr()
    changed = _with(raw, change)
    train(run_config_from_dict(changed), tmp_path)
    err = capsys.readouterr().err
    assert "resuming" in err and "from step 8/48" in err
    assert "protocol changed" not in err
    assert not list(tmp_path.glob("superseded-*"))
    a, b = _weights(uninterrupted), _weights(tmp_path)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert _with(written, change) == written  # the new config is the one recorded


def test_a_protocol_change_moves_the_run_aside_naming_the_keys(
    tmp_path: Path,
    moons_split: Path,
    capsys,
) -> None:
    raw = tiny_toy_run(moons_split, epochs=1)
    train(run_config_from_dict(raw), tmp_path, final_eval=False)
    capsys.readouterr()
    changed = _with(raw, {"train": {"lr": 1e-4, "device": "cpu"}, "data": {"num_train": 900}})
    train(run_config_from_dict(changed), tmp_path, final_eval=False)
    err = capsys.readouterr().err
    (aside,) = tmp_path.glob("superseded-*")
    assert (aside / "checkpoint.pt").is_file() and (aside / "config.yaml").is_file()
    assert "protocol changed" in err and str(aside) in err
    assert "train.lr: 0.003 -> 0.0001" in err
    assert "data.num_train: None -> 900" in err
    assert "device" not in err  # only the keys that changed the protocol are named
    assert "resuming" not in err


def test_protocol_view_and_config_changes() -> None:
    cfg = {
        "name": "a",
        "seed": 0,
        "data": {"dir": "x", "download": False, "num_train": None},
        "train": {"lr": 0.1, "device": "cpu", "progress": True, "compile": False},
    }
    assert protocol_view(cfg) == {"seed": 0, "data": {"num_train": None}, "train": {"lr": 0.1}}
    new = {**cfg, "seed": 1, "train": {"lr": 0.2, "epochs": 3}}
    assert config_changes(protocol_view(cfg), protocol_view(new)) == [
        "seed: 0 -> 1",
        "train.lr: 0.1 -> 0.2",
        "train.epochs: (absent) -> 3",
    ]
    assert "unreadable" in config_changes(None, new)[0]


# --- MNIST: a damaged data copy never touches the run ------------------------------------


def _truncated_copy(tmp_path: Path, real_dir: Path) -> Path:
    """A data dir whose training labels are cut short (a plain IDX file beside the .gz copies,
    which the verifier prefers); the other three files link to the real copy."""
    raw = tmp_path / "bad" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for src in (real_dir / "MNIST" / "raw").iterdir():
        (raw / src.name).symlink_to(src.resolve())
    name = "train-labels-idx1-ubyte"
    src = real_dir / "MNIST" / "raw" / name
    content = (
        src.read_bytes() if src.is_file() else gzip.decompress(src.with_suffix(".gz").read_bytes())
    )
    if (raw / name).exists():
        (raw / name).unlink()
    (raw / name).write_bytes(content[:5000])
    return tmp_path / "bad"


def _mnist_cfg(split: Path, data_dir: Path) -> dict:
    return {
        "dataset": "mnist",
        "preset": "mnist-glow",
        "split": str(split),
        "model": dict(TINY_MNIST),
        "data": {"dir": str(data_dir), "num_train": 300, "num_test": 100},
        "train": {"batch_size": 16, "epochs": 1, "max_steps": 2, "checkpoint_every": 1,
                  "monitor_size": 50, "progress": False, "device": "cpu"},
        "eval": {"batch_size": 100},
    }  # fmt: skip


def test_a_bad_mnist_copy_fails_before_the_run_is_touched(
    tmp_path: Path, real_dir: Path, capsys
) -> None:
    from scnf.cli import main
    from scnf.data import load_mnist

    _, labels = load_mnist(real_dir, train=True)
    split = tmp_path / "split.json"
    save_split(split, make_label_split(labels, 10, 0), labels, 0, "mnist")
    run = tmp_path / "run"
    raw = _mnist_cfg(split, real_dir)
    train(run_config_from_dict(raw), run)  # a finished run
    before = _snapshot(run)
    assert {"checkpoint.pt", "config.yaml", "model.pt", "train_metrics.json"} <= set(before)

    bad = _with(raw, {"data": {"dir": str(_truncated_copy(tmp_path, real_dir))}})
    with pytest.raises(MNISTDataError, match="train-labels-idx1-ubyte: truncated"):
        train(run_config_from_dict(bad), run)
    assert _snapshot(run) == before and not list(run.glob("superseded-*"))

    # the same from the command line: one clear line of error, exit status 1, the run intact
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(yaml.safe_dump(bad))
    assert main(["train", "--config", str(bad_yaml), "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert "scnf train: error: MNIST in" in err and "truncated" in err
    assert _snapshot(run) == before and not list(run.glob("superseded-*"))


# --- the baselines follow the same rule ---------------------------------------------------


def test_baselines_resume_outside_the_protocol_and_name_protocol_changes(
    tmp_path: Path, real_dir: Path, capsys
) -> None:
    from scnf.baselines.config import m1_config_from_dict
    from scnf.baselines.train import train_m1

    def m1(data: dict, **train) -> object:
        t = {"hidden": [16], "latent": 4, "epochs": 2, "batch_size": 50,
             "checkpoint_every": 3, "progress": False, **train}  # fmt: skip
        return m1_config_from_dict(
            {"data": {"num_train": 300, "num_test": 100, **data}, "train": t}
        )

    link = tmp_path / "elsewhere"
    link.symlink_to(real_dir.resolve())
    run = tmp_path / "m1"
    full = train_m1(m1({"dir": str(real_dir)}), tmp_path / "full")
    with pytest.raises(Exception, match="test hook"):
        train_m1(m1({"dir": str(real_dir)}), run, stop_after_step=4)  # checkpoint at step 3
    capsys.readouterr()
    moved = m1({"dir": str(link), "download": True}, checkpoint_every=5)
    resumed = train_m1(moved, run)
    err = capsys.readouterr().err
    assert "from step 3/12" in err and not list(run.glob("superseded-*"))
    assert resumed["test_elbo"] == full["test_elbo"]
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["dir"] == str(link)

    train_m1(m1({"dir": str(link)}, checkpoint_every=5, lr=1e-3), run)
    err = capsys.readouterr().err
    assert len(list(run.glob("superseded-*"))) == 1
    assert "train.lr: 0.0003 -> 0.001" in err and "checkpoint_every" not in err
