"""EM-SGD's E-step and the closed-form M-step of the class Gaussians (float64, f_w held fixed):
the moments against a brute-force weighted computation, and EM's monotonicity."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from scnf.conditional import ClassGaussian
from scnf.data import make_toy
from scnf.train.batches import SemiSupervisedData
from scnf.train.em import (
    VAR_FLOOR,
    compiled_posterior,
    e_step,
    hold_out_closed_form_parameters,
)
from tests.conftest import perturb_, tiny_model


def _data(n_unl: int = 200) -> SemiSupervisedData:
    x, y = make_toy("moons", "train")
    x = x.double()
    return SemiSupervisedData(x[:10], y[:10], x[10 : 10 + n_unl], None, None, image=False)


def _gmm_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = perturb_(tiny_model("toy-glow-gmm").double(), 0.3).eval()  # eval: f_w stays fixed
    with torch.no_grad():
        model.head.log_scales.add_(0.5)  # start away from the optimum
    return model


def _weights_and_z(model, data: SemiSupervisedData) -> tuple[torch.Tensor, torch.Tensor]:
    """z_f of [unlabelled | labelled] and their weights [p(k|x) | one-hot], brute force."""
    with torch.no_grad():
        post = model.log_posterior(data.x_unl).exp()
        z = torch.cat([model.encode(data.x_unl)[0], model.encode(data.x_lab)[0]])
    return z, torch.cat([post, F.one_hot(data.y_lab, model.num_classes).double()])


def _expected_complete(model, data: SemiSupervisedData, resp: torch.Tensor) -> float:
    """Q = sum_lab log p(x, y) + sum_unl sum_k r[j, k] log p(x_j, k)."""
    with torch.no_grad():
        lab = model.log_joint_all(data.x_lab).gather(1, data.y_lab[:, None]).sum()
        return float(lab + (resp * model.log_joint_all(data.x_unl)).sum())


def _marginal(model, data: SemiSupervisedData) -> float:
    """sum_lab log p(x, y) + sum_unl log p(x): eq. (1) on the whole training set."""
    with torch.no_grad():
        lab = model.log_joint_all(data.x_lab).gather(1, data.y_lab[:, None]).sum()
        return float(lab + model.log_marginal(data.x_unl).sum())


def test_m_step_equals_brute_force_weighted_moments() -> None:
    model, data = _gmm_model(0), _data()
    z, w = _weights_and_z(model, data)
    resp = e_step(model, data, batch_size=33)  # E with the old head, then M
    torch.testing.assert_close(resp, w[: data.x_unl.shape[0]])
    for k in range(model.num_classes):
        wk = w[:, k : k + 1]
        mean = (wk * z).sum(0) / wk.sum()
        var = (wk * (z - mean).pow(2)).sum(0) / wk.sum()
        torch.testing.assert_close(model.head.means[k], mean)
        torch.testing.assert_close(model.head.log_scales[k], 0.5 * var.clamp_min(VAR_FLOOR).log())


def test_m_step_floors_variances_and_keeps_empty_classes() -> None:
    head = ClassGaussian(3, 3).double()
    before = head.means.detach().clone(), head.log_scales.detach().clone()
    z = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 5.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    head.set_from_moments_(*ClassGaussian.moments(z, w), var_floor=0.01)
    torch.testing.assert_close(head.means[0], torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64))
    var = torch.tensor([0.01, 0.01, 1.0], dtype=torch.float64)  # two dims at the floor
    torch.testing.assert_close(head.log_scales[0], 0.5 * var.log())
    for k in (1, 2):  # no weight: unchanged
        assert torch.equal(head.means[k], before[0][k])
        assert torch.equal(head.log_scales[k], before[1][k])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_m_step_never_decreases_the_expected_complete_data_log_likelihood(seed: int) -> None:
    model, data = _gmm_model(seed), _data()
    _, w = _weights_and_z(model, data)
    resp = w[: data.x_unl.shape[0]]
    q_before = _expected_complete(model, data, resp)
    e_step(model, data, batch_size=64)  # the M-step, for these very responsibilities
    q_after = _expected_complete(model, data, resp)
    assert q_after >= q_before - 1e-9 * abs(q_before)
    assert q_after > q_before + 1.0  # it does move (the test could fail)
    # and the closed form is the maximum: nudging any head parameter lowers Q
    for p in (model.head.means, model.head.log_scales):
        with torch.no_grad():
            p.add_(1e-3)
        assert _expected_complete(model, data, resp) < q_after
        with torch.no_grad():
            p.sub_(1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_e_and_m_steps_never_decrease_the_marginal_log_likelihood(seed: int) -> None:
    model, data = _gmm_model(seed), _data()
    values = [_marginal(model, data)]
    for _ in range(8):
        e_step(model, data, batch_size=64)
        values.append(_marginal(model, data))
    steps = torch.tensor(values).diff()
    assert (steps >= -1e-9 * abs(values[0])).all(), values
    assert values[-1] > values[0] + 1.0, values


def test_closed_form_head_is_held_out_of_the_optimiser() -> None:
    from scnf.train.config import TrainConfig
    from scnf.train.optim import make_optimizer

    gmm, glow = tiny_model("toy-glow-gmm"), tiny_model("toy-glow-glow")
    assert hold_out_closed_form_parameters(gmm) == ["head.means", "head.log_scales"]
    assert hold_out_closed_form_parameters(glow) == []
    in_opt = {id(p) for g in make_optimizer(gmm, TrainConfig()).param_groups for p in g["params"]}
    assert id(gmm.head.means) not in in_opt and id(gmm.head.log_scales) not in in_opt
    assert all(id(p) in in_opt for p in gmm.flow.parameters())  # f_w keeps its gradient steps


@pytest.mark.slow
def test_compiled_e_step_gives_the_eager_responsibilities_and_m_step() -> None:
    """The compiled E-step pass (one graph, the short last batch padded) changes no number:
    200 unlabelled objects in batches of 64 leave a last batch of 8."""
    data = _data(200)
    eager, fast = _gmm_model(0), _gmm_model(0)
    r_eager = e_step(eager, data, batch_size=64)
    r_fast = e_step(fast, data, batch_size=64, forward=compiled_posterior(fast, 64))
    assert r_fast.shape == (200, 2)
    torch.testing.assert_close(r_fast, r_eager)
    torch.testing.assert_close(fast.head.means, eager.head.means)
    torch.testing.assert_close(fast.head.log_scales, eager.head.log_scales)
