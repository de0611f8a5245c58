"""Contract suite for every invertible layer (float64): round trip, log-det consistency,
log-det = log|det| of the autograd Jacobian, gradients reach every parameter."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from scnf.flows import FFJORD, MultiScaleGlow, VectorGlow
from scnf.layers import (
    ActNorm,
    AffineCoupling,
    FlowSequence,
    InvertibleLinear,
    Logit,
    Squeeze,
    channel_mask,
    checkerboard_mask,
)
from scnf.nets import MLP, ConvNet
from tests.conftest import perturb_

CTX = 3  # context size for conditional layers


def _cases() -> dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...], bool]]:
    """name -> (builder, per-sample input shape, conditional?)."""
    return {
        "actnorm-vec": (lambda: ActNorm(3), (3,), False),
        "actnorm-img": (lambda: ActNorm(2), (2, 4, 4), False),
        "invconv-vec": (lambda: InvertibleLinear(3), (3,), False),
        # more channels than the 5 rows: the factors are applied in turn (factors_for_few_rows)
        "invconv-vec-wide": (lambda: InvertibleLinear(8), (8,), False),
        "invconv-img": (lambda: InvertibleLinear(4), (4, 2, 2), False),
        "invconv-1ch": (lambda: InvertibleLinear(1), (1, 4, 4), False),
        "coupling-vec": (lambda: AffineCoupling(channel_mask((3,), 0), MLP(3, 6, 8)), (3,), False),
        "coupling-img": (
            lambda: AffineCoupling(channel_mask((4, 2, 2), 1), ConvNet(4, 8, 8)),
            (4, 2, 2),
            False,
        ),
        "coupling-checker": (
            lambda: AffineCoupling(checkerboard_mask((1, 4, 4), 0), ConvNet(1, 2, 8)),
            (1, 4, 4),
            False,
        ),
        "cond-coupling-vec": (
            lambda: AffineCoupling(channel_mask((4,), 1), MLP(4, 8, 8, context_dim=CTX)),
            (4,),
            True,
        ),
        "cond-coupling-img": (
            lambda: AffineCoupling(channel_mask((2, 2, 2), 0), ConvNet(2, 4, 8, context_dim=CTX)),
            (2, 2, 2),
            True,
        ),
        "squeeze": (lambda: Squeeze(), (1, 4, 4), False),
        "logit": (lambda: Logit(0.05), (1, 2, 2), False),
        "vector-glow": (lambda: VectorGlow(2, 3, 8), (2,), False),
        "cond-vector-glow": (lambda: VectorGlow(4, 3, 8, context_dim=CTX), (4,), True),
        "multiscale-glow-8x8": (lambda: MultiScaleGlow((1, 8, 8), 16, 1, 8), (1, 8, 8), False),
        "multiscale-glow-8x8-zf4": (lambda: MultiScaleGlow((1, 8, 8), 4, 1, 8), (1, 8, 8), False),
    }


CASES = _cases()


def _build(name: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor | None]:
    builder, shape, conditional = CASES[name]
    layer = builder().double()
    x = torch.rand(5, *shape, dtype=torch.float64)
    if name != "logit" and "multiscale" not in name:
        x = 2 * x - 1
    ctx = torch.randn(5, CTX, dtype=torch.float64) if conditional else None
    layer.train()
    layer(x, ctx)  # data-dependent initialisation of ActNorms
    perturb_(layer)
    layer.eval()
    return layer, x, ctx


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_and_logdet_sum(name: str) -> None:
    layer, x, ctx = _build(name)
    z, ld = layer(x, ctx)
    x_rec, ld_inv = layer.inverse(z, ctx)
    assert ld.shape == (5,)
    assert torch.isfinite(z).all() and torch.isfinite(ld).all()
    torch.testing.assert_close(x_rec, x, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(ld + ld_inv, torch.zeros_like(ld), atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_logdet_matches_autograd_jacobian(name: str) -> None:
    layer, x, ctx = _build(name)
    _, ld = layer(x, ctx)
    for i in range(2):
        xi = x[i : i + 1]
        ci = None if ctx is None else ctx[i : i + 1]

        def f(flat: torch.Tensor, xi=xi, ci=ci) -> torch.Tensor:
            return layer(flat.view_as(xi), ci)[0].flatten()

        jac = torch.autograd.functional.jacobian(f, xi.flatten())
        torch.testing.assert_close(ld[i], torch.linalg.slogdet(jac)[1], atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_reach_every_parameter(name: str) -> None:
    layer, x, ctx = _build(name)
    if not any(p.numel() for p in layer.parameters()):
        pytest.skip("layer has no parameters")
    layer.train()
    z, ld = layer(x, ctx)
    (z.pow(2).sum() - ld.sum()).backward()
    for pname, p in layer.named_parameters():
        if p.numel():
            assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_conditional_coupling_depends_on_context() -> None:
    layer, x, ctx = _build("cond-coupling-vec")
    z1, ld1 = layer(x, ctx)
    z2, ld2 = layer(x, ctx + 1.0)
    assert not torch.allclose(z1, z2) and not torch.allclose(ld1, ld2)


def test_coupling_starts_as_fixed_scaling() -> None:
    """Zero-initialised conditioner: transformed entries are scaled by sigmoid(2)."""
    layer = AffineCoupling(channel_mask((4,), 0), MLP(4, 8, 8))
    x = torch.randn(3, 4)
    z, _ = layer(x)
    torch.testing.assert_close(z[:, :2], x[:, :2])
    torch.testing.assert_close(z[:, 2:], x[:, 2:] * torch.sigmoid(torch.tensor(2.0)))


def test_actnorm_init_survives_checkpoint() -> None:
    a = ActNorm(2)
    a.train()
    a(torch.randn(16, 2, 3, 3) * 5 + 1)
    b = ActNorm(2)
    b.load_state_dict(a.state_dict())
    b.train()
    x = torch.randn(16, 2, 3, 3)
    torch.testing.assert_close(b(x)[0], a(x)[0])  # b must not re-initialise on this batch
    z, _ = ActNorm(2).train()(torch.randn(64, 2, 3, 3) * 5 + 1)
    assert z.mean().abs() < 1e-5 and (z.std() - 1).abs() < 0.05


def test_invconv_logdet_needs_no_slogdet() -> None:
    layer = InvertibleLinear(5).double()
    torch.testing.assert_close(
        layer.log_s.sum(), torch.linalg.slogdet(layer.weight())[1], atol=1e-10, rtol=0
    )


@pytest.fixture(scope="module")
def ffjord() -> FFJORD:
    torch.manual_seed(0)
    f = FFJORD(2, hidden=16, num_layers=2, atol=1e-8, rtol=1e-8).double()
    return perturb_(f, 0.3)


def test_ffjord_round_trip(ffjord: FFJORD) -> None:
    x = torch.randn(6, 2, dtype=torch.float64)
    z, ld = ffjord(x)
    x_rec, ld_inv = ffjord.inverse(z)
    torch.testing.assert_close(x_rec, x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ld + ld_inv, torch.zeros_like(ld), atol=1e-6, rtol=0)
    assert (z - x).abs().max() > 1e-3  # it really moved


def test_ffjord_logdet_matches_jacobian_within_tolerance(ffjord: FFJORD) -> None:
    x = torch.randn(3, 2, dtype=torch.float64)
    _, ld = ffjord(x)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: ffjord(v[None])[0][0], x[i])
        torch.testing.assert_close(ld[i], torch.linalg.slogdet(jac)[1], atol=1e-5, rtol=1e-5)


def test_ffjord_gradients(ffjord: FFJORD) -> None:
    ffjord.zero_grad()
    x = torch.randn(4, 2, dtype=torch.float64)
    z, ld = ffjord(x)
    (z.pow(2).sum() - ld.sum()).backward()
    for pname, p in ffjord.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_flow_sequence_is_a_composition() -> None:
    a, b = perturb_(ActNorm(3)), perturb_(InvertibleLinear(3))
    seq = FlowSequence([a, b])
    x = torch.randn(4, 3)
    z1, l1 = a(x)
    z2, l2 = b(z1)
    z, ld = seq(x)
    torch.testing.assert_close(z, z2)
    torch.testing.assert_close(ld, l1 + l2)
