"""Kingma et al. (2014) baselines: bounds against brute force, gradients, resume, learning."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch.distributions import Bernoulli, Independent, Normal
from torch.nn import functional as F

from scnf.baselines import M1, M2
from scnf.baselines.config import ConfigError, m1_config_from_dict, m2_config_from_dict
from scnf.baselines.train import _Interrupt, train_m1, train_m2
from scnf.cli import main
from tests.conftest import perturb_


def _tiny_m2(likelihood: str) -> M2:
    return perturb_(M2(6, hidden=7, z_dim=3, n_classes=4, likelihood=likelihood).double(), 0.3)


def _data(likelihood: str, b: int = 3) -> torch.Tensor:
    x = torch.rand(b, 6, dtype=torch.float64)
    return torch.bernoulli(x) if likelihood == "bernoulli" else 2 * x - 1


def _log_px_brute(model: M2, x, y, z) -> torch.Tensor:
    """log p(x | y, z) through torch.distributions, from the decoder's raw output."""
    onehot = F.one_hot(y, model.n_classes).to(z.dtype)
    h = F.softplus(model.dec_in.a(z) + onehot @ model.dec_in.y.weight)
    out = model.dec_out(h)
    if model.likelihood == "bernoulli":
        return Independent(Bernoulli(logits=out), 1).log_prob(x)
    mu, raw = out.chunk(2, -1)
    logvar = -math.log(1e4) + F.softplus(raw + math.log(1e4))
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1).log_prob(x)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_labelled_bound_equals_a_monte_carlo_elbo(likelihood: str) -> None:
    """mean_s L(x, y; eps_s) with analytic KL = brute-force E_q[log p(x,y,z) - log q(z|x,y)]."""
    model, x, s = _tiny_m2(likelihood), _data(likelihood), 40_000
    y = torch.tensor([0, 3, 1])
    eps = torch.randn(s, *x.shape[:1], model.z_dim, dtype=torch.float64)
    xs, ys = x.expand(s, *x.shape), y.expand(s, -1)
    with torch.no_grad():
        ours = model.labelled_bound(xs.reshape(-1, 6), ys.reshape(-1), eps.reshape(-1, 3))
        ours = ours.reshape(s, -1)
        onehot = F.one_hot(y, model.n_classes).double()
        h = F.softplus(model.enc_in.a(x) + onehot @ model.enc_in.y.weight)
        mu, logvar = model.enc_out(h).chunk(2, -1)
        q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
        z = mu + torch.exp(0.5 * logvar) * eps
        prior = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
        brute = _log_px_brute(model, xs, ys, z) + prior.log_prob(z) - q.log_prob(z)
        brute = brute + math.log(1 / model.n_classes)
    diff = ours - brute  # same z: differs only by KL_analytic vs its one-sample estimate
    se = diff.std(0) / math.sqrt(s)
    assert torch.all(diff.mean(0).abs() < 5 * se + 1e-6), (diff.mean(0), se)
    # and the analytic KL part is exact: with eps = 0 the bound is log p(x|y,mu) + log p(y) - KL
    kl = torch.distributions.kl_divergence(q, prior)
    with torch.no_grad():
        at_mean = model.labelled_bound(x, y, torch.zeros_like(mu))
    expected = _log_px_brute(model, x, y, mu) - math.log(model.n_classes) - kl
    torch.testing.assert_close(at_mean, expected.detach(), rtol=1e-10, atol=1e-10)


def test_m1_elbo_equals_a_monte_carlo_elbo() -> None:
    model = perturb_(M1(5, (6, 4), 2).double(), 0.3)
    x, s = torch.bernoulli(torch.rand(2, 5, dtype=torch.float64)), 40_000
    eps = torch.randn(s, 2, 2, dtype=torch.float64)
    with torch.no_grad():
        ours = model.elbo(x.expand(s, 2, 5).reshape(-1, 5), eps.reshape(-1, 2)).reshape(s, 2)
        mu, logvar = model.encode(x)
        q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
        z = mu + torch.exp(0.5 * logvar) * eps
        prior = Independent(Normal(torch.zeros(2, dtype=torch.float64), 1.0), 1)
        px = Independent(Bernoulli(logits=model.decoder(z)), 1)
        brute = px.log_prob(x) + prior.log_prob(z) - q.log_prob(z)
    diff = ours - brute
    assert torch.all(diff.mean(0).abs() < 5 * diff.std(0) / math.sqrt(s) + 1e-6)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_unlabelled_bound_is_the_q_weighted_sum_plus_entropy(likelihood: str) -> None:
    model, x = _tiny_m2(likelihood), _data(likelihood, b=5)
    eps = torch.randn(5, model.n_classes, model.z_dim, dtype=torch.float64)
    with torch.no_grad():
        ours = model.unlabelled_bound(x, eps)
        q = torch.softmax(model.classify(x), -1)
        brute = torch.zeros(5, dtype=torch.float64)
        for k in range(model.n_classes):
            lk = model.labelled_bound(x, torch.full((5,), k), eps[:, k])
            brute += q[:, k] * lk
        brute -= (q * q.log()).sum(-1)
        assert torch.allclose(model.labelled_bound_all(x, eps)[:, 2],
                              model.labelled_bound(x, torch.full((5,), 2), eps[:, 2]))  # fmt: skip
    torch.testing.assert_close(ours, brute, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_objective_shapes_and_gradients(likelihood: str) -> None:
    model = _tiny_m2(likelihood)
    x_l, x_u = _data(likelihood, 2), _data(likelihood, 4)
    y_l = torch.tensor([1, 2])
    assert model.labelled_bound(x_l, y_l).shape == (2,)
    assert model.labelled_bound_all(x_u).shape == (4, model.n_classes)
    assert model.unlabelled_bound(x_u).shape == (4,)
    terms = model.objective(x_l, y_l, x_u, n_lab=10, n_unl=90, alpha=10.0)
    assert terms.loss.shape == () and torch.isfinite(terms.loss)
    # the weighting of eq. 9: -J/N = -(10 mean L + 90 mean U)/100 + alpha * CE / 100
    torch.testing.assert_close(terms.loss, -terms.bound + 10.0 * terms.clf / 100)
    terms.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_config_refuses_unknown_keys_before_loading_anything() -> None:
    with pytest.raises(ConfigError, match="train.lrate"):
        m2_config_from_dict({"split": "x.json", "train": {"lrate": 1.0}})
    with pytest.raises(ConfigError, match="m1_run"):
        m2_config_from_dict({"split": "x.json", "model": "m1m2"})
    with pytest.raises(ConfigError, match="features"):
        m2_config_from_dict({"split": "x.json", "model": "m2", "train": {"features": "mean"}})
    with pytest.raises(ConfigError, match="model"):
        m2_config_from_dict({"split": "x.json", "model": "m3"})
    with pytest.raises(ConfigError, match="batch_size"):
        m1_config_from_dict({"train": {"batch_size": 0}})


# --- runs on real MNIST (skipped without the offline copy) ------------------------------------


def _split(tmp_path: Path, real_dir: Path) -> Path:
    out = tmp_path / "split.json"
    assert main(["splits", "--dataset", "mnist", "--seed", "0", "--out", str(out),
                 "--data-dir", str(real_dir)]) == 0  # fmt: skip
    return out


def _m2_cfg(split: Path, real_dir: Path, **train):
    data = {"dir": str(real_dir), "num_train": 400, "num_test": 200}
    t = {"hidden": 32, "latent": 4, "labelled_batch": 4, "unlabelled_batch": 32,
         "checkpoint_every": 4, "progress": False, **train}  # fmt: skip
    return m2_config_from_dict({"split": str(split), "data": data, "train": t})


def _m1_cfg(real_dir: Path):
    data = {"dir": str(real_dir), "num_train": 300, "num_test": 100}
    train = {"hidden": [16], "latent": 4, "epochs": 2, "batch_size": 50,
             "checkpoint_every": 3, "progress": False}  # fmt: skip
    return m1_config_from_dict({"data": data, "train": train})


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", weights_only=True)


def test_resume_is_bit_identical(tmp_path: Path, real_dir: Path) -> None:
    split = _split(tmp_path, real_dir)
    cfg = _m2_cfg(split, real_dir, max_steps=10)
    full = train_m2(cfg, tmp_path / "full")
    with pytest.raises(_Interrupt):
        train_m2(cfg, tmp_path / "cut", stop_after_step=6)  # killed after the step-4 checkpoint
    # The CPU time counts the first attempt's (kept in the checkpoint; marked here so that the
    # carry-over shows whatever the machine's speed).
    state = torch.load(tmp_path / "cut/checkpoint.pt", weights_only=False)
    assert state["cpu_elapsed"] > 0
    torch.save({**state, "cpu_elapsed": 1e6}, tmp_path / "cut/checkpoint.pt")
    resumed = train_m2(cfg, tmp_path / "cut")
    assert 1e6 < resumed["train_cpu_s"] < 1e6 + 3600
    train = json.loads((tmp_path / "cut/train_metrics.json").read_text())
    assert train["train_cpu_s"] == resumed["train_cpu_s"]
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["test_error"] == full["test_error"] and resumed["steps"] == 10
    log = [json.loads(line) for line in (tmp_path / "cut/train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [e["step"] for e in full_log(tmp_path / "full")]

    m1 = _m1_cfg(real_dir)
    train_m1(m1, tmp_path / "m1full")
    with pytest.raises(_Interrupt):
        train_m1(m1, tmp_path / "m1cut", stop_after_step=4)
    train_m1(m1, tmp_path / "m1cut")
    a, b = _weights(tmp_path / "m1full"), _weights(tmp_path / "m1cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_new_schedule_length_continues_the_run(tmp_path: Path, real_dir: Path) -> None:
    """A finished 2-epoch run lengthened to 4, and a 6-epoch run killed at step 12 and shortened
    to 4: both end with the weights and log of an uninterrupted 4-epoch run. A schedule that the
    checkpoint has passed, or another setting, starts over (the old run is moved aside)."""
    split = _split(tmp_path, real_dir)

    def cfg(**train):  # ~400 unlabelled objects, 100 per step: 4 steps per epoch
        return _m2_cfg(split, real_dir, unlabelled_batch=100, **train)

    def log_of(run: str) -> list[dict]:
        return [{k: v for k, v in e.items() if k != "seconds"} for e in full_log(tmp_path / run)]

    full = train_m2(cfg(epochs=4), tmp_path / "full")
    assert full["steps"] == 16
    train_m2(cfg(epochs=2), tmp_path / "grown")
    first_half = full_log(tmp_path / "grown")
    with pytest.raises(_Interrupt):  # checkpoints every 4 steps: the last one at step 12
        train_m2(cfg(epochs=6), tmp_path / "cut", stop_after_step=14)
    for run in ("grown", "cut"):
        res = train_m2(cfg(epochs=4), tmp_path / run)
        a, b = _weights(tmp_path / "full"), _weights(tmp_path / run)
        assert all(torch.equal(a[k], b[k]) for k in a), run
        assert res["test_error"] == full["test_error"] and res["steps"] == 16
        assert log_of(run) == log_of("full") and [e["step"] for e in log_of(run)] == [4, 8, 12, 16]
        assert not list((tmp_path / run).glob("superseded-*"))
    # continued, not retrained (which would also give these weights): the first two epochs'
    # log entries, wall times included, are the 2-epoch run's
    assert full_log(tmp_path / "grown")[:2] == first_half

    train_m2(cfg(epochs=1), tmp_path / "grown")  # the checkpoint (step 16) is past the end
    assert len(list((tmp_path / "grown").glob("superseded-*"))) == 1
    assert [e["step"] for e in full_log(tmp_path / "grown")] == [4]
    train_m2(cfg(epochs=2, lr=1e-3), tmp_path / "grown")  # another setting: starts over
    assert len(list((tmp_path / "grown").glob("superseded-*"))) == 2  # even in the same second
    assert [e["step"] for e in full_log(tmp_path / "grown")] == [4, 8]


def full_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_m1m2_pipeline_and_metrics(tmp_path: Path, real_dir: Path) -> None:
    split = _split(tmp_path, real_dir)
    train_m1(_m1_cfg(real_dir), tmp_path / "m1")
    raw = {"model": "m1m2", "split": str(split), "m1_run": str(tmp_path / "m1"),
           "data": {"dir": str(real_dir), "num_train": 400, "num_test": 200},
           "train": {"hidden": 16, "latent": 3, "max_steps": 5, "labelled_batch": 4,
                     "unlabelled_batch": 16, "active_std": 0.0, "progress": False}}  # fmt: skip
    cfg_path = tmp_path / "m1m2.json"
    cfg_path.write_text(json.dumps(raw))
    assert main(["baseline-m2", "--config", str(cfg_path), "--out", str(tmp_path / "r")]) == 0
    m = json.loads((tmp_path / "r/metrics.json").read_text())
    run = m["run"]
    assert {k: run[k] for k in ("dataset", "preset", "f", "h", "mode", "zf_dim", "seed")} == {
        "dataset": "mnist", "preset": "kingma2014-m1m2", "f": None, "h": None, "mode": "vi",
        "zf_dim": None, "seed": 0}  # fmt: skip
    p = run["protocol"]
    # the protocol holds settings only, so every seed's split gives the same protocol
    assert run["clf_weight"] == p["train.alpha_per_n"] == 0.1
    assert m["alpha"] == pytest.approx(0.1 * (m["num_labelled"] + m["num_unlabelled"]))
    assert not {"train.steps", "train.alpha", "data.num_unlabelled"} & set(p)
    assert p["model.likelihood"] == "gaussian" and p["model.m1_dims_kept"] == 4
    assert p["m1.model.hidden"] == [16] and p["model.hidden"] == 16 and p["train.lr"] == 3e-4
    assert "train.progress" not in p and "train.checkpoint_every" not in p
    train = json.loads((tmp_path / "r/train_metrics.json").read_text())
    assert train["steps"] == 5 and train["train_wall_s"] > 0 and train["train_cpu_s"] > 0
    log = full_log(tmp_path / "r")
    assert log[-1]["step"] == 5 and 0 <= log[-1]["mon_labelled_error"] <= 100
    assert 0 <= log[-1]["mon_heldout_error"] <= 100
    assert m["num_test"] == 200 and m["num_labelled"] == 100 and m["steps"] == 5
    assert 0 <= m["test_error"] <= 100 and m["provenance"]["config"]["model"] == "m1m2"


def test_bad_inputs_fail_before_training(tmp_path: Path, real_dir: Path, capsys) -> None:
    split = _split(tmp_path, real_dir)

    def run(raw: dict, command: str = "baseline-m2") -> str:
        path = tmp_path / "cfg.yaml"
        path.write_text(yaml.safe_dump(raw))
        assert main([command, "--config", str(path), "--out", str(tmp_path / "o")]) == 1
        return capsys.readouterr().err

    assert "train.lrate" in run({"split": str(split), "train": {"lrate": 1}})
    assert "missing" in run({"split": str(split), "data": {"dir": str(tmp_path)}})
    assert "MNIST" in run({"data": {"dir": str(tmp_path)}}, "baseline-m1")
    toy = tmp_path / "toy.json"
    assert main(["splits", "--dataset", "moons", "--seed", "0", "--out", str(toy)]) == 0
    assert "split file" in run({"split": str(toy), "data": {"dir": str(real_dir)}})
    assert "does not exist" in run({"split": str(tmp_path / "none.json"),
                                    "data": {"dir": str(real_dir)}})  # fmt: skip
    assert "baseline-m1" in run({"split": str(split), "model": "m1m2", "m1_run": str(tmp_path)})
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_a_short_m2_run_learns(tmp_path: Path, real_dir: Path) -> None:
    """150 steps on 2,000 images (about 7 s): far below the 90 % error of chance.

    alpha = 1.0 N instead of Kingma's 0.1 N and lr 1e-3 make the classifier learn within a test's
    budget (about 35 % error; with 0.1 N it needs thousands of steps: 66 % after 400).
    """
    split = _split(tmp_path, real_dir)
    cfg = _m2_cfg(split, real_dir, hidden=100, latent=10, lr=1e-3, max_steps=150,
                  labelled_batch=20, unlabelled_batch=50, alpha_per_n=1.0,
                  checkpoint_every=1000)  # fmt: skip
    cfg.data.num_train, cfg.data.num_test = 2000, 1000
    result = train_m2(cfg, tmp_path / "run")
    assert result["test_error"] < 60.0, result["test_error"]


def test_heldout_monitor_watches_the_scnf_runs_images(tmp_path: Path, real_dir: Path) -> None:
    """The baselines' held-out monitor scores the same unlabelled images as the SCNF runs'."""
    from scnf.baselines.train import heldout_index, load_semi_pixels
    from scnf.train.batches import load_data
    from scnf.train.config import run_config_from_dict

    split = _split(tmp_path, real_dir)
    data = load_semi_pixels(_m2_cfg(split, real_dir))
    held = heldout_index(data.x_unl.shape[0], size=50)
    raw = {"dataset": "mnist", "preset": "mnist-glow", "split": str(split),
           "data": {"dir": str(real_dir), "num_train": 400},
           "train": {"monitor_size": 50}}  # fmt: skip
    scnf = load_data(run_config_from_dict(raw), torch.device("cpu"), test=False)
    assert torch.equal(data.y_unl[held], scnf.y_heldout)
    pixels = (data.x_unl[held] * 255).round().to(torch.uint8)
    assert torch.equal(pixels, scnf.x_heldout.reshape(50, -1))
