"""Training: objective vs brute force, EM-SGD gradients, resume == uninterrupted,
non-finite loss handling, config refusal, and that learning really happens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from scnf.data import make_label_split, make_toy, save_split
from scnf.train import ConfigError, objective_from_joints, run_config_from_dict
from scnf.train import loop as loop_mod
from scnf.train.loop import NonFiniteLossError, train
from tests.conftest import TINY_TOY, perturb_, tiny_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def moons_split(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("split") / "moons-seed0.json"
    _, y = make_toy("moons", "train")
    save_split(path, make_label_split(y, 5, 0), y, 0, "moons")
    return path


def _cfg(split: Path, **train) -> dict:
    return {
        "dataset": "moons",
        "preset": "toy-glow-glow",
        "split": str(split),
        "seed": 3,
        "model": dict(TINY_TOY),
        "train": {
            "optimizer": "adam",
            "lr": 3e-3,
            "weight_decay": 0.0,
            "batch_size": 64,
            "epochs": 2,
            "checkpoint_every": 4,
            "eval_every": 1,
            "progress": False,
            "device": "cpu",
            **train,
        },
    }


def test_objective_equals_brute_force() -> None:
    model = perturb_(tiny_model("toy-glow-glow").double())
    x = torch.randn(7, 2, dtype=torch.float64)
    y_lab = torch.tensor([1, 0, 1])
    lj = model.log_joint_all(x)
    for mode in ("sgd", "em-sgd"):
        terms = objective_from_joints(lj, y_lab, mode, clf_weight=0.7)
        lab = sum(model.log_joint(x[i : i + 1], y_lab[i : i + 1]) for i in range(3))
        if mode == "sgd":
            unl = model.log_marginal(x[3:]).sum()
        else:
            post = model.log_posterior(x[3:]).exp()
            unl = sum(
                (post[:, k] * model.log_joint(x[3:], torch.full((4,), k))).sum() for k in range(2)
            )
        nll = -(lab + unl) / 7
        clf = -model.log_posterior(x[:3]).gather(1, y_lab[:, None]).mean()
        torch.testing.assert_close(terms.nll, nll.squeeze().detach())
        torch.testing.assert_close(terms.loss, (nll + 0.7 * clf).squeeze())
        assert int(terms.correct) == int((lj[:3].argmax(1) == y_lab).sum())


def test_em_sgd_passes_no_gradient_through_q() -> None:
    model = perturb_(tiny_model("toy-glow-glow").double(), 0.2)
    x = torch.randn(9, 2, dtype=torch.float64)
    y_lab = torch.tensor([0, 1])

    def grads(fn) -> torch.Tensor:
        model.zero_grad()
        fn().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    g_em = grads(lambda: objective_from_joints(model.log_joint_all(x), y_lab, "em-sgd").loss)
    g_sgd = grads(lambda: objective_from_joints(model.log_joint_all(x), y_lab, "sgd").loss)

    def attached_q() -> torch.Tensor:  # what EM-SGD must NOT compute
        lj = model.log_joint_all(x)
        unl = (torch.softmax(lj[2:], 1) * lj[2:]).sum()
        return -(lj[:2].gather(1, y_lab[:, None]).sum() + unl) / 9

    g_attached = grads(attached_q)
    # With q fixed, sum_k q_k grad log p(x, k) = grad log p(x) (Fisher's identity) ...
    torch.testing.assert_close(g_em, g_sgd)
    # ... whereas a gradient through q adds the entropy term and differs.
    assert (g_attached - g_em).abs().max() > 1e-6


def _final_params(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)


def test_resume_after_interrupt_equals_uninterrupted(tmp_path: Path, moons_split: Path) -> None:
    cfg = run_config_from_dict(_cfg(moons_split, epochs=3))
    full = train(cfg, tmp_path / "full")
    with pytest.raises(loop_mod._Interrupt):
        train(cfg, tmp_path / "cut", stop_after_step=10)  # checkpoint at 8, killed at 10
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == 8
    resumed = train(cfg, tmp_path / "cut")
    a, b = _final_params(tmp_path / "full"), _final_params(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert resumed["test_error"] == full["test_error"]
    log = [
        json.loads(line) for line in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()
    ]
    assert [e["epoch"] for e in log] == [1, 2, 3]  # no duplicated epochs after the resume


def test_killed_cli_run_resumes(tmp_path: Path, moons_split: Path) -> None:
    """A real SIGKILL of `scnf train` mid-run, then a rerun: same weights as a clean run."""
    raw = _cfg(moons_split, epochs=60, checkpoint_every=10, eval_every=0)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "scnf", "train", "--config", str(tmp_path / "run.yaml")]
    proc = subprocess.Popen(
        cmd + ["--out", str(tmp_path / "killed")],
        cwd=REPO,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 60
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (tmp_path / "killed" / "train_metrics.json").exists()
    again = subprocess.run(
        cmd + ["--out", str(tmp_path / "killed")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr
    subprocess.run(
        cmd + ["--out", str(tmp_path / "clean")],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    a, b = _final_params(tmp_path / "killed"), _final_params(tmp_path / "clean")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize(
    "poisoned_steps,poison_nll,message",
    [
        # the loss itself turns NaN from step 7 on: caught at the step-8 checkpoint
        (range(7, 100), True, "non-finite training loss by step 8"),
        # only the backward pass of step 8 (a checkpoint step) is NaN: the loss logged for it
        # is finite, but the weights it leaves are not
        ([8], False, "non-finite weights by step 8"),
    ],
)
def test_non_finite_run_stops_and_keeps_last_good_checkpoint(
    tmp_path: Path, moons_split: Path, monkeypatch, poisoned_steps, poison_nll, message
) -> None:
    real = loop_mod.semi_supervised_objective
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        terms = real(*args, **kwargs)
        if calls["n"] in poisoned_steps:
            terms.loss = terms.loss * torch.full((), float("nan")).requires_grad_()
            if poison_nll:
                terms.nll = terms.nll * float("nan")
        return terms

    monkeypatch.setattr(loop_mod, "semi_supervised_objective", poisoned)
    cfg = run_config_from_dict(_cfg(moons_split, epochs=5))
    with pytest.raises(NonFiniteLossError, match=message):
        train(cfg, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "train_metrics.json").exists()


@pytest.mark.parametrize(
    "patch,message",
    [
        ({"train": {"lrr": 1}}, "train.lrr"),
        ({"train": {"batch_size": "big"}}, "train.batch_size"),
        ({"train": {"mode": "em"}}, "train.mode"),
        ({"model": {"zf_dim": 98}}, "zf_dim"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_config_is_refused_before_training(tmp_path: Path, moons_split: Path, patch, message):
    raw = _cfg(moons_split)
    for key, value in patch.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and key in raw else value
    with pytest.raises(ConfigError, match=message):
        run_config_from_dict(raw)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "scnf",
            "train",
            "--config",
            str(tmp_path / "bad.yaml"),
            "--out",
            str(tmp_path / "run"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and message in out.stderr
    assert not (tmp_path / "run").exists()


def test_learning_happens_on_moons(tmp_path: Path, moons_split: Path) -> None:
    """toy-glow-glow (default size) on moons, short CPU run: under 5% test error."""
    raw = _cfg(moons_split, epochs=100, batch_size=256, schedule="cosine", eval_every=0)
    raw["model"] = {}
    result = train(run_config_from_dict(raw), tmp_path)
    assert result["test_error"] < 5.0, result
    assert result["test_nll"] < 2.0


def test_progress_bar_toggle_resumes_instead_of_restarting(
    tmp_path: Path, moons_split: Path, capsys
) -> None:
    with pytest.raises(loop_mod._Interrupt):
        train(run_config_from_dict(_cfg(moons_split, epochs=1)), tmp_path, stop_after_step=4)
    train(run_config_from_dict(_cfg(moons_split, epochs=1, progress=True)), tmp_path)
    assert "resuming" in capsys.readouterr().err
    assert not list(tmp_path.glob("superseded-*"))


def test_fresh_start_does_not_append_to_a_stale_log(tmp_path: Path, moons_split: Path) -> None:
    """A run killed after logging an epoch but before its first checkpoint starts afresh."""
    cfg = run_config_from_dict(_cfg(moons_split, epochs=2))
    train(cfg, tmp_path)
    for name in ("checkpoint.pt", "model.pt", "train_metrics.json"):
        (tmp_path / name).unlink()
    train(cfg, tmp_path)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2]


def test_final_eval_can_be_left_to_the_evaluate_step(tmp_path: Path, moons_split: Path) -> None:
    result = train(run_config_from_dict(_cfg(moons_split, epochs=1)), tmp_path, final_eval=False)
    assert "test_error" not in result and result["epochs"] == 1.0
    saved = json.loads((tmp_path / "train_metrics.json").read_text())
    assert "test_error" not in saved and (tmp_path / "model.pt").is_file()


def test_changed_config_sets_old_run_aside(tmp_path: Path, moons_split: Path) -> None:
    cfg = run_config_from_dict(_cfg(moons_split, epochs=1))
    with pytest.raises(loop_mod._Interrupt):
        train(cfg, tmp_path, stop_after_step=4)
    changed = run_config_from_dict(_cfg(moons_split, epochs=1, lr=1e-4))
    train(changed, tmp_path)
    (aside,) = tmp_path.glob("superseded-*")
    assert (aside / "checkpoint.pt").is_file() and (aside / "config.yaml").is_file()
    assert (tmp_path / "train_metrics.json").is_file()
