"""SCNF composition: joint / marginal / posterior identities, encode/decode, presets, cost."""

from __future__ import annotations

import math

import pytest
import torch

import scnf
from scnf.conditional import ClassGaussian
from tests.conftest import perturb_, tiny_model

PRESETS = sorted(scnf.PRESETS)


def _inputs(model: scnf.SCNF, n: int = 6, dtype=torch.float64) -> torch.Tensor:
    if model.flow.__class__.__name__ == "MultiScaleGlow":
        return torch.rand(n, *model.flow.input_shape, dtype=dtype).clamp(1e-3, 1 - 1e-3)
    return torch.randn(n, 2, dtype=dtype)


def _ready(preset: str, **kw) -> tuple[scnf.SCNF, torch.Tensor]:
    if "ffjord" in preset:  # tight solver tolerances so inverse/forward agree to ~1e-7
        kw = {"ffjord_atol": 1e-9, "ffjord_rtol": 1e-9, **kw}
    model = tiny_model(preset, **kw).double()
    x = _inputs(model)
    model.train()
    model.log_marginal(x)  # ActNorm data-dependent init
    perturb_(model, 0.05)
    model.eval()
    return model, x


@pytest.mark.parametrize("preset", PRESETS)
def test_decode_inverts_encode(preset: str) -> None:
    model, x = _ready(preset)
    z_f, z_aux = model.encode(x)
    assert z_f.shape == (x.shape[0], model.zf_dim)
    assert z_f.shape[1] + z_aux.shape[1] == math.prod(x.shape[1:])
    tol = 1e-6 if "ffjord" in preset else 1e-9  # FFJORD: within the solver tolerance
    torch.testing.assert_close(model.decode(z_f, z_aux), x, atol=tol, rtol=tol)


@pytest.mark.parametrize("preset", PRESETS)
def test_marginal_is_logsumexp_of_joints(preset: str) -> None:
    model, x = _ready(preset)
    joints = torch.stack(
        [model.log_joint(x, torch.full((x.shape[0],), k)) for k in range(model.num_classes)], 1
    )
    torch.testing.assert_close(model.log_marginal(x), torch.logsumexp(joints, 1))
    torch.testing.assert_close(model.log_joint_all(x), joints)


@pytest.mark.parametrize("preset", PRESETS)
def test_posterior_is_normalised_and_depends_on_y(preset: str) -> None:
    model, x = _ready(preset)
    post = model.log_posterior(x)
    assert post.shape == (x.shape[0], model.num_classes)
    torch.testing.assert_close(post.exp().sum(1), torch.ones(x.shape[0], dtype=x.dtype))
    y0, y1 = torch.zeros(x.shape[0], dtype=torch.long), torch.ones(x.shape[0], dtype=torch.long)
    assert (model.log_joint(x, y0) - model.log_joint(x, y1)).abs().min() > 1e-6


def test_class_gaussian_matches_closed_form() -> None:
    head = ClassGaussian(3, 4).double()
    perturb_(head, 0.5)
    z = torch.randn(5, 3, dtype=torch.float64)
    for k in range(4):
        ref = torch.distributions.Independent(
            torch.distributions.Normal(head.means[k], head.log_scales[k].exp()), 1
        ).log_prob(z)
        torch.testing.assert_close(head.log_prob_all(z)[:, k], ref)
        torch.testing.assert_close(head.log_prob(z, torch.full((5,), k)), ref)


def test_scnf_joint_equals_full_change_of_variables() -> None:
    """log p(x, y) = log N(z_aux) + log N(h(z_f, y)) + log|det J_{x -> (z_aux, h)}| + log p(y)."""
    model, x = _ready("mnist-glow", input_shape=(1, 8, 8), zf_dim=16, head_steps=2)
    x = x[:2]
    y = torch.tensor([1, 3])
    lj = model.log_joint(x, y)
    for i in range(2):

        def full(flat: torch.Tensor, i=i) -> torch.Tensor:
            z_f, z_aux = model.encode(flat.view(1, 1, 8, 8))
            u, _ = model.head.flow(z_f, model.head.embedding(y[i : i + 1]))
            return torch.cat([z_aux, u], 1)[0]

        jac = torch.autograd.functional.jacobian(full, x[i].flatten())
        z = full(x[i].flatten())
        ref = (
            -0.5 * z.pow(2).sum()
            - 0.5 * z.numel() * math.log(2 * math.pi)
            + torch.linalg.slogdet(jac)[1]
            + model.log_prior[y[i]]
        )
        torch.testing.assert_close(lj[i], ref, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize(
    "zf_dim,shape",
    [(49, (1, 7, 7)), (98, (2, 7, 7)), (196, (4, 7, 7)), (392, (8, 7, 7)), (784, (16, 7, 7))],
)
def test_zf_sizes(zf_dim: int, shape: tuple[int, int, int]) -> None:
    model = tiny_model("mnist-glow", zf_dim=zf_dim)
    assert model.flow.final_shape == shape
    z_f, z_aux = model.encode(torch.rand(2, 1, 28, 28))
    assert z_f.shape == (2, zf_dim) and z_aux.shape == (2, 784 - zf_dim)
    assert model.log_marginal(torch.rand(2, 1, 28, 28)).shape == (2,)


def test_bad_zf_dim_and_unknown_override_are_refused() -> None:
    with pytest.raises(ValueError, match="zf_dim=100"):
        tiny_model("mnist-glow", zf_dim=100)
    with pytest.raises(ValueError, match="unknown option"):
        scnf.make_model("mnist-glow", hiden=3)
    with pytest.raises(ValueError, match="unknown preset"):
        scnf.make_model("cifar-glow")


@pytest.mark.parametrize("preset", PRESETS)
def test_gradients_reach_every_parameter(preset: str) -> None:
    model, x = _ready(preset)
    model.train()
    y = torch.arange(x.shape[0]) % model.num_classes
    loss = -(model.log_joint(x[:3], y[:3]).sum() + model.log_marginal(x[3:]).sum())
    loss.backward()
    for name, p in model.named_parameters():
        if p.numel():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("preset", ["mnist-glow", "mnist-gmm", "toy-glow-glow"])
def test_log_marginal_runs_f_once_and_h_in_one_batched_call(preset: str) -> None:
    """f runs once on the B objects; every layer of h_phi runs exactly once, the class-free
    first layers on the B objects (shared by all classes) and every class-conditioned layer on
    the K*B replicated rows, never once per class."""
    model, x = _ready(preset)
    calls = {"f": 0}
    model.flow.register_forward_hook(lambda m, i, o: calls.__setitem__("f", calls["f"] + 1))
    rows: dict[str, list[int]] = {}
    if hasattr(model.head, "flow"):
        for step_index, step in enumerate(model.head.flow.layers):
            for layer_index, layer in enumerate(step.layers):
                name = f"{step_index}.{layer_index}.{type(layer).__name__}"
                rows[name] = []
                layer.register_forward_hook(
                    lambda m, i, o, name=name: rows[name].append(i[0].shape[0])
                )
    model.log_marginal(x)
    assert calls["f"] == 1
    if rows:
        b, kb = x.shape[0], x.shape[0] * model.num_classes
        assert all(len(seen) == 1 for seen in rows.values()), rows
        conditioned = [seen[0] for name, seen in rows.items() if "Coupling" in name]
        assert conditioned and all(n == kb for n in conditioned), rows
        # Sharing is only a prefix: once a layer sees K*B rows, every later one does too.
        sizes = [seen[0] for seen in rows.values()]
        assert set(sizes) <= {b, kb} and sizes == sorted(sizes), rows
        assert sizes[0] == b  # the first ActNorm + LU ran once per object


def test_state_dict_round_trip_reproduces_log_prob() -> None:
    model, x = _ready("mnist-glow")
    clone = tiny_model("mnist-glow").double()
    clone.load_state_dict(model.state_dict())
    clone.train()  # must not re-run ActNorm initialisation
    torch.testing.assert_close(clone.log_marginal(x), model.log_marginal(x))


def test_class_prior_enters_joint() -> None:
    model = tiny_model("toy-glow-gmm", class_prior=[0.25, 0.75])
    x = torch.randn(4, 2)
    lj = model.log_joint_all(x)
    base = scnf.make_model("toy-glow-gmm", flow_steps=2, flow_hidden=16)
    base.load_state_dict(
        {k: v for k, v in model.state_dict().items() if k != "log_prior"}, strict=False
    )
    expected = torch.log(torch.tensor([[0.25, 0.75]])) - math.log(0.5)  # base prior is uniform
    torch.testing.assert_close(lj - base.log_joint_all(x), expected.expand(4, 2))
    with pytest.raises(ValueError, match="class_prior"):
        scnf.make_model("toy-glow-gmm", class_prior=[0.5, 0.6])


def test_default_mnist_model_is_about_the_authors_size() -> None:
    n = sum(p.numel() for p in scnf.make_model("mnist-glow").parameters())
    assert 14e6 < n < 17.5e6  # authors: 15,875,447


def test_levels_parameter() -> None:
    deeper = tiny_model("mnist-glow", levels=4)
    assert [p.shape for p in deeper.flow.plans][-1] == (4, 7, 7)
    assert len(deeper.flow.plans) == 4 and deeper.zf_dim == 196
    assert len(tiny_model("mnist-glow", zf_dim=49).flow.plans) == 5


def test_ffjord_forward_divergence_matches_autograd_trace() -> None:
    """The hand-carried Jacobian's trace equals FFJORD's autograd trace, and so do gradients."""
    from scnf.flows.ffjord import FFJORD

    torch.manual_seed(0)
    flow = perturb_(FFJORD(2, hidden=16, num_layers=3).double(), 0.3)
    t, z = torch.tensor(0.4, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    out = {}
    for mode in ("forward", "autograd"):
        flow.dynamics.divergence = mode
        flow.zero_grad()
        dz, div = flow.dynamics(t, (z, None))
        (dz.sum() + div.pow(2).sum()).backward()
        out[mode] = (dz, div, [p.grad.clone() for p in flow.parameters()])
    torch.testing.assert_close(out["forward"][0], out["autograd"][0])
    torch.testing.assert_close(out["forward"][1], out["autograd"][1])
    for a, b in zip(out["forward"][2], out["autograd"][2]):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="divergence"):
        FFJORD(2, divergence="hutchinson")


def test_ffjord_training_solver_only_in_training_mode() -> None:
    model = scnf.make_model(
        "toy-ffjord-gmm", ffjord_hidden=8, ffjord_train_method="bosh3", ffjord_train_atol=1e-2
    )
    flow = model.flow
    model.train()
    assert flow.solver_options() == {"method": "bosh3", "atol": 1e-2, "rtol": 1e-3}
    model.eval()
    assert flow.solver_options() == {"method": "dopri5", "atol": 1e-5, "rtol": 1e-5}
    plain = scnf.make_model(
        "toy-ffjord-gmm", ffjord_train_atol=None, ffjord_train_rtol=None
    ).flow.train()
    assert plain.solver_options() == {"method": "dopri5", "atol": 1e-5, "rtol": 1e-5}
