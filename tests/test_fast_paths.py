"""The CPU fast paths give the numbers of the plain layers (benchmarks/cpu_step.py times them).

Four switches, each a class attribute that defaults to the fast path:
``AffineCoupling.split_channels``, ``InvertibleLinear.gather_permutation``,
``InvertibleLinear.factors_for_few_rows`` and ``ConditionalGlow.share_class_free_layers``.
The contract suite (test_layers.py) runs on the fast paths; here each is compared with its
plain version on the same weights.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from scnf.conditional import ConditionalGlow
from scnf.layers import AffineCoupling, InvertibleLinear, channel_mask, checkerboard_mask
from scnf.nets import MLP, ConvNet
from scnf.presets import make_model
from scnf.train.objective import semi_supervised_objective
from tests.conftest import perturb_


@contextlib.contextmanager
def switch(cls: type, name: str, value: bool):
    old = getattr(cls, name)
    setattr(cls, name, value)
    try:
        yield
    finally:
        setattr(cls, name, old)


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in module.named_parameters()
    }


@pytest.mark.parametrize(
    ("mask", "net", "ctx"),
    [
        (channel_mask((4, 3, 3), 0), ConvNet(4, 8, 16), 0),
        (channel_mask((4, 3, 3), 1), ConvNet(4, 8, 16, context_dim=3), 3),
        (channel_mask((5,), 0), MLP(5, 10, 16), 0),
        (channel_mask((6,), 1), MLP(6, 12, 16, context_dim=3), 3),
    ],
    ids=["conv-first-half", "conv-second-half-ctx", "mlp-odd", "mlp-second-half-ctx"],
)
def test_split_coupling_equals_masked_coupling(mask, net, ctx) -> None:
    torch.manual_seed(0)
    layer = AffineCoupling(mask, net).double()
    assert layer._split, "a channel mask must take the fast path"
    perturb_(layer, 0.3)
    x = torch.randn(7, *mask.shape, dtype=torch.float64, requires_grad=True)
    context = torch.randn(7, ctx, dtype=torch.float64) if ctx else None
    out = {}
    for split in (False, True):
        with switch(AffineCoupling, "split_channels", split):
            layer.zero_grad()
            x.grad = None
            z, ld = layer(x, context)
            back, ld_inv = layer.inverse(z, context)
            (z.square().sum() + ld.sum()).backward()
            out[split] = (z.detach(), ld.detach(), back.detach(), ld_inv.detach(),
                          x.grad.clone(), _grads(layer))  # fmt: skip
    for a, b in zip(out[False][:5], out[True][:5]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for name, g in out[False][5].items():
        torch.testing.assert_close(g, out[True][5][name], rtol=1e-10, atol=1e-12, msg=name)


def test_checkerboard_and_scattered_masks_keep_the_masked_path() -> None:
    assert not AffineCoupling(checkerboard_mask((1, 4, 4), 0), ConvNet(1, 2, 8))._split
    scattered = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert not AffineCoupling(scattered, MLP(4, 8, 8))._split


def test_gathered_permutation_is_bit_identical() -> None:
    torch.manual_seed(0)
    layer = InvertibleLinear(37)
    perturb_(layer, 0.1)
    with switch(InvertibleLinear, "gather_permutation", False):
        plain = layer.weight()
    with switch(InvertibleLinear, "gather_permutation", True):
        fast = layer.weight()
    assert torch.equal(plain, fast)


@pytest.mark.parametrize("rows", [5, 37, 60], ids=["few-rows", "square", "many-rows"])
def test_factors_applied_to_few_rows_give_the_built_weight(rows) -> None:
    """Fewer rows than channels: x U^T L^T, permuted; the map, log-det and grads of x W^T."""
    torch.manual_seed(0)
    layer = InvertibleLinear(37).double()
    perturb_(layer, 0.1)
    x = torch.randn(rows, 37, dtype=torch.float64, requires_grad=True)
    out = {}
    for fast in (False, True):
        with switch(InvertibleLinear, "factors_for_few_rows", fast):
            layer.zero_grad()
            x.grad = None
            z, ld = layer(x)
            (z.sin().sum() + ld.sum()).backward()
            out[fast] = (z.detach(), ld.detach(), x.grad.clone(), _grads(layer))
    for a, b in zip(out[False][:3], out[True][:3]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for name, g in out[False][3].items():
        torch.testing.assert_close(g, out[True][3][name], rtol=1e-10, atol=1e-12, msg=name)
    back, _ = layer.inverse(out[True][0])
    torch.testing.assert_close(back, x.detach(), rtol=1e-10, atol=1e-10)


def test_shared_class_free_layers_give_the_plain_joint() -> None:
    torch.manual_seed(0)
    head = ConditionalGlow(12, 4, num_steps=3, hidden=16).double()
    z = torch.randn(9, 12, dtype=torch.float64)
    with switch(ConditionalGlow, "share_class_free_layers", True):
        head.log_prob_all(z)  # ActNorm's init falls back to the plain path (replicated batch)
    perturb_(head, 0.2)
    out = {}
    for shared in (False, True):
        with switch(ConditionalGlow, "share_class_free_layers", shared):
            head.zero_grad()
            lp = head.log_prob_all(z)
            lp.logsumexp(1).sum().backward()
            out[shared] = (lp.detach(), _grads(head))
    torch.testing.assert_close(out[False][0], out[True][0], rtol=1e-12, atol=1e-12)
    for name, g in out[False][1].items():
        torch.testing.assert_close(g, out[True][1][name], rtol=1e-10, atol=1e-12, msg=name)
    # and log_prob_all agrees with the one-class log_prob, class by class
    for k in range(4):
        torch.testing.assert_close(
            out[True][0][:, k], head.log_prob(z, torch.full((9,), k)).detach()
        )


def test_actnorm_init_is_unchanged_by_the_shared_path() -> None:
    """The first call initialises ActNorm on the replicated batch in both modes."""
    params = {}
    for shared in (False, True):
        torch.manual_seed(0)
        head = ConditionalGlow(6, 3, num_steps=2, hidden=8)
        with switch(ConditionalGlow, "share_class_free_layers", shared):
            head.log_prob_all(torch.randn(5, 6, generator=torch.Generator().manual_seed(1)))
        params[shared] = {n: p.detach().clone() for n, p in head.named_parameters()}
    for name, p in params[False].items():
        assert torch.equal(p, params[True][name]), name


def test_model_loss_fast_vs_plain_float32() -> None:
    """All four switches together on a small MNIST model: the loss within 1e-5 relative."""
    torch.manual_seed(0)
    model = make_model("mnist-glow", steps_per_level=2, hidden=16, head_steps=2, head_hidden=32)
    x = torch.rand(12, 1, 28, 28)
    y = torch.randint(10, (4,))
    semi_supervised_objective(model, x, y)  # ActNorm init
    perturb_(model, 0.01)
    losses = []
    for fast in (False, True):
        with contextlib.ExitStack() as stack:
            for cls, name in (
                (AffineCoupling, "split_channels"),
                (InvertibleLinear, "gather_permutation"),
                (InvertibleLinear, "factors_for_few_rows"),
                (ConditionalGlow, "share_class_free_layers"),
            ):
                stack.enter_context(switch(cls, name, fast))
            losses.append(float(semi_supervised_objective(model, x, y, "sgd", 1.0).loss.detach()))
    assert abs(losses[0] - losses[1]) <= 1e-5 * abs(losses[0])
