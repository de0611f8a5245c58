"""Training: objective vs brute force, EM-SGD gradients, resume == uninterrupted (also after a
SIGKILL, also under EM-SGD), non-finite loss handling, config refusal, monitors that never read
the test set, the CPU-fallback guard, and that learning really happens."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import scnf
from scnf import device as device_mod
from scnf.data import make_label_split, make_toy, save_split
from scnf.device import CPUTooSlowError
from scnf.train import ConfigError, objective_from_joints, run_config_from_dict
from scnf.train import loop as loop_mod
from scnf.train.batches import BatchSampler, SemiSupervisedData
from scnf.train.em import e_step
from scnf.train.loop import NonFiniteLossError, train
from tests.conftest import perturb_, tiny_model, tiny_toy_run

REPO = Path(__file__).resolve().parents[1]


def test_objective_equals_brute_force() -> None:
    model = perturb_(tiny_model("toy-glow-glow").double())
    x = torch.randn(7, 2, dtype=torch.float64)
    y_lab = torch.tensor([1, 0, 1])
    lj = model.log_joint_all(x)
    resp = torch.tensor([[0.2, 0.8], [1.0, 0.0], [0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    lab = sum(model.log_joint(x[i : i + 1], y_lab[i : i + 1]) for i in range(3))
    marginal_nll = -(lab + model.log_marginal(x[3:]).sum()) / 7
    clf = -model.log_posterior(x[:3]).gather(1, y_lab[:, None]).mean()
    for mode in ("sgd", "em-sgd"):
        terms = objective_from_joints(lj, y_lab, mode, clf_weight=0.7, resp=resp)
        if mode == "sgd":
            loss = marginal_nll
        else:  # the expected complete-data log-likelihood with the given responsibilities
            unl = sum(
                (resp[:, k] * model.log_joint(x[3:], torch.full((4,), k))).sum() for k in range(2)
            )
            loss = -(lab + unl) / 7
        # the reported nll is eq. (1)'s in both modes
        torch.testing.assert_close(terms.nll, marginal_nll.squeeze().detach())
        torch.testing.assert_close(terms.loss, (loss + 0.7 * clf).squeeze())
        assert int(terms.correct) == int((lj[:3].argmax(1) == y_lab).sum())
    with pytest.raises(ValueError, match="responsibilities"):
        objective_from_joints(lj, y_lab, "em-sgd")


def _toy_data(n_unl: int = 40, dtype=torch.float64) -> SemiSupervisedData:
    x, y = make_toy("moons", "train")
    x = x.to(dtype)
    return SemiSupervisedData(x[:6], y[:6], x[6 : 6 + n_unl], None, None, image=False)


def _grads(model: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_em_gradient_equals_sgd_right_after_an_estep_and_differs_later() -> None:
    """Fisher's identity holds only while the stored r is the current posterior."""
    model = perturb_(tiny_model("toy-glow-glow").double(), 0.2)
    data = _toy_data()
    sampler = BatchSampler(data, 16, 1 / 4, seed=0)
    with torch.no_grad():
        model.log_joint_all(data.x_unl)  # ActNorm's data-dependent init, as the loop does
    resp = e_step(model, data, batch_size=7)
    assert resp.shape == (40, 2) and resp.dtype == torch.float64

    def both_grads() -> tuple[torch.Tensor, torch.Tensor]:
        x, y, iu = sampler.sample_with_indices()
        em = objective_from_joints(model.log_joint_all(x), y, "em-sgd", 0, resp[iu])
        g_em = _grads(model, em.loss)
        g_sgd = _grads(model, objective_from_joints(model.log_joint_all(x), y, "sgd").loss)
        return g_em, g_sgd

    g_em, g_sgd = both_grads()
    torch.testing.assert_close(g_em, g_sgd)  # right after the E-step
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):  # M-step gradient steps with r held fixed
        x, y, iu = sampler.sample_with_indices()
        opt.zero_grad()
        objective_from_joints(model.log_joint_all(x), y, "em-sgd", 0, resp[iu]).loss.backward()
        opt.step()
    g_em, g_sgd = both_grads()
    assert (g_em - g_sgd).abs().max() > 1e-4 * g_sgd.abs().max()
    resp = e_step(model, data, batch_size=7)  # a new E-step brings them back together
    g_em, g_sgd = both_grads()
    torch.testing.assert_close(g_em, g_sgd)


def test_em_sgd_passes_no_gradient_through_r() -> None:
    model = perturb_(tiny_model("toy-glow-glow").double(), 0.2)
    x = torch.randn(9, 2, dtype=torch.float64)
    y_lab = torch.tensor([0, 1])

    def attached_r() -> torch.Tensor:  # what EM-SGD must NOT compute
        lj = model.log_joint_all(x)
        unl = (torch.softmax(lj[2:], 1) * lj[2:]).sum()
        return -(lj[:2].gather(1, y_lab[:, None]).sum() + unl) / 9

    def em(detach: bool) -> torch.Tensor:
        lj = model.log_joint_all(x)
        r = torch.softmax(lj[2:], 1)
        return objective_from_joints(lj, y_lab, "em-sgd", 0, r.detach() if detach else r).loss

    g_fixed = _grads(model, em(detach=True))
    torch.testing.assert_close(_grads(model, em(detach=False)), g_fixed)  # r detached inside
    assert (_grads(model, attached_r()) - g_fixed).abs().max() > 1e-6  # the entropy's gradient


def test_sampler_with_indices_draws_the_batches_of_sample() -> None:
    data = _toy_data(dtype=torch.float32)
    a, b = BatchSampler(data, 16, 1 / 4, seed=5), BatchSampler(data, 16, 1 / 4, seed=5)
    for _ in range(3):
        (xa, ya), (xb, yb, iu) = a.sample(), b.sample_with_indices()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(xb[4:], data.x_unl[iu])


def _final_params(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)


def _stored_resp(run_dir: Path) -> torch.Tensor | None:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["responsibilities"]


@pytest.mark.parametrize(
    "preset,train_kw",
    [
        ("toy-glow-glow", {}),
        # E-steps at 0, 5, 10, ...: the resume at step 8 needs the stored responsibilities
        ("toy-glow-glow", {"mode": "em-sgd", "estep_every": 5}),
        ("toy-glow-gmm", {"mode": "em-sgd", "estep_every": 5}),  # + the closed-form M-step
    ],
)
def test_resume_after_interrupt_equals_uninterrupted(
    tmp_path: Path, moons_split: Path, preset: str, train_kw: dict
) -> None:
    raw = tiny_toy_run(moons_split, epochs=3, **train_kw)
    raw["preset"] = preset
    cfg = run_config_from_dict(raw)
    full = train(cfg, tmp_path / "full")
    with pytest.raises(loop_mod._Interrupt):
        train(cfg, tmp_path / "cut", stop_after_step=10)  # checkpoint at 8, killed at 10
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert cut["step"] == 8
    assert (cut["responsibilities"] is None) == ("mode" not in train_kw)
    resumed = train(cfg, tmp_path / "cut")
    a, b = _final_params(tmp_path / "full"), _final_params(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    ra, rb = _stored_resp(tmp_path / "full"), _stored_resp(tmp_path / "cut")
    if ra is not None:
        torch.testing.assert_close(ra, rb, rtol=0, atol=0)
    assert resumed["test_error"] == full["test_error"]
    assert resumed["mon_heldout_nll"] == full["mon_heldout_nll"]
    log = [
        json.loads(line) for line in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()
    ]
    assert [e["epoch"] for e in log] == [1, 2, 3]  # no duplicated epochs after the resume


def test_killed_cli_run_resumes(tmp_path: Path, moons_split: Path) -> None:
    """A real SIGKILL of `scnf train` mid-run, then a rerun: same weights as a clean run.

    An EM-SGD run of the GMM head (E-steps every 7 steps, checkpoints every 10): weights, head
    and responsibilities all come back from the checkpoint. Small work (320 tiny steps, a few
    seconds), generous time bounds: the test does not depend on the machine's speed.
    """
    raw = tiny_toy_run(
        moons_split, epochs=20, checkpoint_every=10, monitor_every=0, mode="em-sgd", estep_every=7
    )
    raw["preset"] = "toy-glow-gmm"
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "scnf", "train", "--config", str(tmp_path / "run.yaml")]
    proc = subprocess.Popen(
        cmd + ["--out", str(tmp_path / "killed")],
        cwd=REPO,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (tmp_path / "killed" / "train_metrics.json").exists()
    again = subprocess.run(
        cmd + ["--out", str(tmp_path / "killed")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr
    subprocess.run(
        cmd + ["--out", str(tmp_path / "clean")],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    a, b = _final_params(tmp_path / "killed"), _final_params(tmp_path / "clean")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    ra, rb = _stored_resp(tmp_path / "killed"), _stored_resp(tmp_path / "clean")
    torch.testing.assert_close(ra, rb, rtol=0, atol=0)


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
    cfg = run_config_from_dict(tiny_toy_run(moons_split, epochs=5))
    with pytest.raises(NonFiniteLossError, match=message):
        train(cfg, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "train_metrics.json").exists()


def test_non_finite_responsibilities_stop_the_run(
    tmp_path: Path, moons_split: Path, monkeypatch
) -> None:
    """An E-step on a diverged model: the NaN r is never stored, the last checkpoint stays."""
    real = loop_mod.e_step
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        r = real(*args, **kwargs)
        return r * float("nan") if calls["n"] == 3 else r  # the E-step of step 6

    monkeypatch.setattr(loop_mod, "e_step", poisoned)
    cfg = run_config_from_dict(tiny_toy_run(moons_split, epochs=2, mode="em-sgd", estep_every=3))
    with pytest.raises(NonFiniteLossError, match="responsibilities at the E-step of step 6"):
        train(cfg, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4 and torch.isfinite(state["responsibilities"]).all()


@pytest.mark.parametrize(
    "patch,message",
    [
        ({"train": {"lrr": 1}}, "train.lrr"),
        ({"train": {"batch_size": "big"}}, "train.batch_size"),
        ({"train": {"mode": "em"}}, "train.mode"),
        ({"train": {"estep_every": 0}}, "train.estep_every"),
        ({"train": {"gmm_m_step": "moments"}}, "train.gmm_m_step"),
        ({"train": {"monitor_every": -1}}, "train.monitor_every"),
        ({"train": {"eval_every": 1}}, "train.eval_every"),  # renamed monitor_every
        ({"model": {"zf_dim": 98}}, "zf_dim"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_config_is_refused_before_training(tmp_path: Path, moons_split: Path, patch, message):
    raw = tiny_toy_run(moons_split)
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
    raw = tiny_toy_run(moons_split, epochs=100, batch_size=256, schedule="cosine", monitor_every=0)
    raw["model"] = {}
    result = train(run_config_from_dict(raw), tmp_path)
    assert result["test_error"] < 5.0, result
    assert result["test_nll"] < 2.0


def test_progress_bar_toggle_resumes_instead_of_restarting(
    tmp_path: Path, moons_split: Path, capsys
) -> None:
    with pytest.raises(loop_mod._Interrupt):
        train(
            run_config_from_dict(tiny_toy_run(moons_split, epochs=1)), tmp_path, stop_after_step=4
        )
    train(run_config_from_dict(tiny_toy_run(moons_split, epochs=1, progress=True)), tmp_path)
    assert "resuming" in capsys.readouterr().err
    assert not list(tmp_path.glob("superseded-*"))


def test_fresh_start_does_not_append_to_a_stale_log(tmp_path: Path, moons_split: Path) -> None:
    """A run killed after logging an epoch but before its first checkpoint starts afresh."""
    cfg = run_config_from_dict(tiny_toy_run(moons_split, epochs=2))
    train(cfg, tmp_path)
    for name in ("checkpoint.pt", "model.pt", "train_metrics.json"):
        (tmp_path / name).unlink()
    train(cfg, tmp_path)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2]


def test_final_eval_can_be_left_to_the_evaluate_step(tmp_path: Path, moons_split: Path) -> None:
    result = train(
        run_config_from_dict(tiny_toy_run(moons_split, epochs=1)), tmp_path, final_eval=False
    )
    assert "test_error" not in result and result["epochs"] == 1.0
    saved = json.loads((tmp_path / "train_metrics.json").read_text())
    assert "test_error" not in saved and (tmp_path / "model.pt").is_file()


@pytest.mark.parametrize("change", [{"lr": 1e-4}, {"estep_every": 3}])
def test_changed_config_sets_old_run_aside(tmp_path: Path, moons_split: Path, change) -> None:
    cfg = run_config_from_dict(tiny_toy_run(moons_split, epochs=1, mode="em-sgd", estep_every=2))
    with pytest.raises(loop_mod._Interrupt):
        train(cfg, tmp_path, stop_after_step=4)
    changed = run_config_from_dict(tiny_toy_run(moons_split, epochs=1, mode="em-sgd", **change))
    train(changed, tmp_path)
    (aside,) = tmp_path.glob("superseded-*")
    assert (aside / "checkpoint.pt").is_file() and (aside / "config.yaml").is_file()
    assert (tmp_path / "train_metrics.json").is_file()


@pytest.mark.parametrize("m_step", ["closed-form", "gradient"])
def test_gmm_m_step_sets_the_gaussians_in_closed_form_or_by_gradient_steps(
    tmp_path: Path, moons_split: Path, monkeypatch, m_step: str
) -> None:
    """train.gmm_m_step under EM-SGD: ``closed-form`` sets the class Gaussians at each E-step
    and no optimiser step moves them in between; ``gradient`` leaves them to the optimiser,
    which moves them between E-steps, and the E-step does not touch them."""
    seen = []  # (m_step argument, head before the E-step, head after it)

    def recording_e_step(model, data, batch_size, m_step=None, forward=None):
        before = [p.detach().clone() for p in model.head.parameters()]
        resp = e_step(model, data, batch_size, m_step=m_step, forward=forward)
        seen.append((m_step, before, [p.detach().clone() for p in model.head.parameters()]))
        return resp

    monkeypatch.setattr(loop_mod, "e_step", recording_e_step)
    raw = tiny_toy_run(moons_split, epochs=1, mode="em-sgd", estep_every=4, gmm_m_step=m_step)
    raw["preset"] = "toy-glow-gmm"
    train(run_config_from_dict(raw), tmp_path, final_eval=False)
    assert len(seen) == 4  # steps 0, 4, 8, 12 of 16
    closed = m_step == "closed-form"
    for flag, before, after in seen:
        assert flag is closed
        set_by_e_step = any(not torch.equal(a, b) for a, b in zip(before, after))
        assert set_by_e_step is closed
    for (_, _, after), (_, before_next, _) in zip(seen, seen[1:]):
        moved_by_optimiser = any(not torch.equal(a, b) for a, b in zip(after, before_next))
        assert moved_by_optimiser is not closed


def test_monitors_log_heldout_metrics_and_never_read_the_test_set(
    tmp_path: Path, moons_split: Path, monkeypatch
) -> None:
    seen = {}
    real = loop_mod.load_data

    def spy(*args, **kwargs):
        seen["data"] = real(*args, **kwargs)
        return seen["data"]

    monkeypatch.setattr(loop_mod, "load_data", spy)
    cfg = run_config_from_dict(tiny_toy_run(moons_split, epochs=5, monitor_every=2))
    result = train(cfg, tmp_path, final_eval=False)
    assert seen["data"].x_test is None and seen["data"].y_test is None  # never loaded
    assert seen["data"].x_heldout.shape == (300, 2)  # monitor_size of the validation set
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    monitored = [e["epoch"] for e in log if "mon_heldout_error" in e]
    assert monitored == [2, 4, 5]  # every 2 epochs and the final step
    last = log[-1]
    assert 0 <= last["mon_labelled_error"] <= 100 and 0 <= last["mon_heldout_error"] <= 100
    assert math.isfinite(last["mon_heldout_nll"]) and last["mon_heldout_bpd"] is None
    assert not any(k.startswith("test_") for e in log for k in e)
    saved = json.loads((tmp_path / "train_metrics.json").read_text())
    for key in ("mon_labelled_error", "mon_heldout_error", "mon_heldout_nll", "mon_heldout_bpd"):
        assert saved[key] == last[key] == result[key]
    assert "validation" in saved["monitor_set"]["heldout"]


def test_mnist_heldout_is_a_fixed_subset_of_the_unlabelled_pool(tmp_path: Path, real_dir) -> None:
    from scnf.data import load_mnist
    from scnf.train.batches import load_data

    _, labels = load_mnist(real_dir, train=True)
    save_split(tmp_path / "s.json", make_label_split(labels, 10, 0), labels, 0, "mnist")
    raw = {
        "dataset": "mnist",
        "preset": "mnist-glow",
        "split": str(tmp_path / "s.json"),
        "data": {"dir": str(real_dir), "num_train": 1000},
        "train": {"monitor_size": 300},
    }
    cfg = run_config_from_dict(raw)
    data = load_data(cfg, torch.device("cpu"), test=False)
    assert data.x_test is None and data.x_heldout.shape[0] == 300
    idx = data.heldout_index
    assert torch.equal(idx, load_data(cfg, torch.device("cpu"), test=False).heldout_index)
    labelled = set(make_label_split(labels, 10, 0).tolist())
    assert idx.unique().numel() == 300 and int(idx.max()) < 1000
    assert not labelled & set(idx.tolist())  # unlabelled objects only ...
    x_all, y_all = load_mnist(real_dir, train=True)
    assert torch.equal(data.x_heldout, x_all[idx])  # ... scored against their true labels
    assert torch.equal(data.y_heldout, y_all[idx])
    raw["train"]["monitor_size"] = 10**6  # capped at the pool
    capped = load_data(run_config_from_dict(raw), torch.device("cpu"), test=False)
    assert capped.x_heldout.shape[0] == capped.x_unl.shape[0]


def test_auto_device_refuses_a_long_cpu_run(tmp_path: Path, moons_split: Path, monkeypatch):
    """`auto` that falls back to the CPU stops a run estimated at days; `cpu` forces it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "estimated_cpu_seconds", lambda *a: 3 * 86400.0)
    cfg = run_config_from_dict(tiny_toy_run(moons_split, epochs=1, device="auto"))
    with pytest.raises(CPUTooSlowError, match=r"about 72 hours .*`device: cpu`.*--device cpu"):
        train(cfg, tmp_path / "auto")
    assert not (tmp_path / "auto").exists()  # refused before anything is written
    with pytest.raises(CPUTooSlowError):
        train(
            run_config_from_dict(tiny_toy_run(moons_split, epochs=1)), tmp_path / "x", device="auto"
        )
    train(cfg, tmp_path / "forced", device="cpu")  # explicit cpu: never refused
    assert (tmp_path / "forced" / "model.pt").is_file()
    monkeypatch.setattr(device_mod, "estimated_cpu_seconds", lambda *a: 3600.0)
    train(cfg, tmp_path / "short")  # an hour: auto on the CPU is fine


def test_cpu_estimate_refuses_paper_mnist_only() -> None:
    """The estimate on the configs' own settings: paper MNIST is refused, toys and quick not."""
    from scnf.device import CPU_REFUSAL_SECONDS, estimated_cpu_seconds

    paper = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    quick = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())
    # parameter counts from the README table; the quick MNIST model is built (it is small)
    small = scnf.make_model("mnist-glow", **quick["mnist"]["model"])
    quick_mnist = sum(p.numel() for p in small.parameters())
    mnist_steps = paper["mnist"]["train"]["epochs"] * 235  # ceil(60000 / 256)
    for n in (15_801_892, 6_069_008):  # mnist-glow, mnist-gmm
        assert estimated_cpu_seconds(n, 256, mnist_steps) > CPU_REFUSAL_SECONDS
    toy_steps = paper["toy"]["train"]["epochs"] * 4  # ceil(1000 / 256)
    for n in (55_956, 36_968, 53_048, 34_060):
        assert estimated_cpu_seconds(n, 256, toy_steps) < CPU_REFUSAL_SECONDS
    q = quick["mnist"]["train"]
    assert estimated_cpu_seconds(quick_mnist, q["batch_size"], q["max_steps"]) < 3600


def test_move_aside_never_overwrites(tmp_path: Path) -> None:
    """Two runs superseded within one second get two directories (a -2 suffix), each complete."""
    from scnf.train.checkpoint import move_aside

    asides = []
    for text in ("first", "second"):
        (tmp_path / "config.yaml").write_text(text)
        asides.append(move_aside(tmp_path, ("config.yaml", "absent.pt")))
    assert asides[0] != asides[1] and not (tmp_path / "config.yaml").exists()
    assert [(a / "config.yaml").read_text() for a in asides] == ["first", "second"]


def test_step_monitors_and_cumulative_clocks(tmp_path: Path, moons_split: Path) -> None:
    """monitor_every_steps adds monitors inside epochs; every entry has cumulative wall/CPU s."""
    cfg = run_config_from_dict(
        tiny_toy_run(
            moons_split, epochs=3, monitor_every=0, monitor_every_steps=5, checkpoint_every=7
        )
    )
    full = train(cfg, tmp_path / "full", final_eval=False)
    log = [json.loads(x) for x in (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()]
    monitored = [e["step"] for e in log if "mon_heldout_error" in e]
    # 16 steps per epoch: every 5th step, and the final step (48); epoch ends 16 and 32 are not
    # multiples of 5, so they log train_* only.
    assert monitored == [5, 10, 15, 20, 25, 30, 35, 40, 45, 48]
    assert [e["step"] for e in log if "train_nll" in e] == [16, 32, 48]
    cpu = [e["cpu_s"] for e in log]
    assert all(b >= a for a, b in zip(cpu, cpu[1:])) and all(e["wall_s"] > 0 for e in log)
    assert full["train_cpu_s"] >= cpu[-1] > 0
    # a killed run resumes to the same log steps (the mid-epoch entries are checkpointed too)
    with pytest.raises(loop_mod._Interrupt):
        train(cfg, tmp_path / "cut", stop_after_step=23, final_eval=False)  # checkpoint at 21
    train(cfg, tmp_path / "cut", final_eval=False)
    cut = [json.loads(x) for x in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()]
    assert [(e["step"], "train_nll" in e) for e in cut] == [
        (e["step"], "train_nll" in e) for e in log
    ]
    assert cut[-1]["mon_heldout_nll"] == log[-1]["mon_heldout_nll"]


def test_negative_step_monitor_interval_is_refused(moons_split: Path) -> None:
    with pytest.raises(ConfigError, match="monitor_every_steps"):
        run_config_from_dict(tiny_toy_run(moons_split, monitor_every_steps=-1))


@pytest.mark.slow
@pytest.mark.parametrize("preset, mode", [("toy-glow-glow", "sgd"), ("toy-glow-gmm", "em-sgd")])
def test_cpu_compiled_training_matches_eager(
    tmp_path: Path, moons_split: Path, preset: str, mode: str
) -> None:
    """train.compile on the CPU (inductor) trains to the eager run's weights, to float32 noise;
    under EM-SGD the compiled E-steps (every 4 steps) and M-steps included."""
    results = {}
    for compiled in (False, True):
        run = tiny_toy_run(moons_split, epochs=1, compile=compiled, mode=mode, estep_every=4)
        cfg = run_config_from_dict({**run, "preset": preset})
        results[compiled] = train(cfg, tmp_path / str(compiled), final_eval=False)
    a, b = _final_params(tmp_path / "False"), _final_params(tmp_path / "True")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4, msg=k)
    assert results[True]["final_train_nll"] == pytest.approx(
        results[False]["final_train_nll"], rel=1e-4
    )
