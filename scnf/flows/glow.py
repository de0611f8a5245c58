"""Glow flows: a flat-vector Glow (toy f_w and the conditional h_phi) and the
multi-scale image Glow f_w whose deepest output is z_f.

A Glow step is ActNorm -> invertible 1x1 conv (LU) -> affine coupling
(Kingma & Dhariwal, 2018). The image flow is a sequence of levels
(squeeze -> steps -> factor out half) whose output is flattened as
``[z_aux (shallow first) | z_f]``: the last ``zf_dim`` entries are z_f.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from scnf.layers import (
    ActNorm,
    AffineCoupling,
    Flow,
    FlowSequence,
    InvertibleLinear,
    Logit,
    Squeeze,
    channel_mask,
    checkerboard_mask,
    split_channels,
)
from scnf.nets import MLP, ConvNet


def glow_step(channels: int, mask: Tensor, net: nn.Module) -> FlowSequence:
    """ActNorm -> LU 1x1 conv -> affine coupling (``mask`` picks the conditioning half)."""
    return FlowSequence([ActNorm(channels), InvertibleLinear(channels), AffineCoupling(mask, net)])


def vector_glow_step(
    dim: int, hidden: int, num_layers: int, parity: int, context_dim: int = 0
) -> FlowSequence:
    """One Glow step on (B, dim) vectors; the conditioner is an MLP."""
    net = MLP(dim, 2 * dim, hidden, num_layers, context_dim)
    return glow_step(dim, channel_mask((dim,), parity), net)


def image_glow_step(shape: tuple[int, int, int], hidden: int, parity: int) -> FlowSequence:
    """One Glow step on (B, C, H, W); channel-split coupling, checkerboard when C = 1."""
    c = shape[0]
    mask = channel_mask(shape, parity) if c > 1 else checkerboard_mask(shape, parity)
    return glow_step(c, mask, ConvNet(c, 2 * c, hidden))


class VectorGlow(FlowSequence):
    """Glow on flat vectors: ``num_steps`` steps with alternating coupling halves.

    Used as the 2-D toy f_w (``context_dim = 0``) and as the conditional flow
    h_phi on z_f (``context_dim`` = size of the class embedding).
    """

    def __init__(
        self, dim: int, num_steps: int, hidden: int, num_layers: int = 2, context_dim: int = 0
    ):
        if dim < 2:
            raise ValueError(f"VectorGlow needs dim >= 2 to couple, got {dim}")
        super().__init__(
            vector_glow_step(dim, hidden, num_layers, i % 2, context_dim) for i in range(num_steps)
        )
        self.dim = dim
        self.zf_dim, self.aux_dim = dim, 0  # as the toy f_w, all of z is z_f


@dataclass(frozen=True)
class LevelPlan:
    """What one level of the image flow does, with the shape its steps see."""

    split: bool  # factor out half of the channels before this level's steps
    squeeze: bool  # then squeeze 2x2 -> channels
    shape: tuple[int, int, int]  # (C, H, W) seen by the steps


def plan_levels(
    input_shape: tuple[int, int, int], zf_dim: int, min_levels: int = 3
) -> list[LevelPlan]:
    """Decide squeezes and factor-outs so that the deepest output has ``zf_dim`` entries.

    Level 1 squeezes; level 2 factors out half (if z_f is at most half the input)
    and squeezes again; later levels factor out half until ``zf_dim`` is reached.
    At least ``min_levels`` levels keep the depth comparable across z_f sizes. For a
    1x28x28 input this gives z_f in {784, 392, 196, 98, 49}.
    """
    plans = _try_plan(input_shape, zf_dim, min_levels)
    if plans is None:
        total = math.prod(input_shape)
        ok = [total // 2**k for k in range(8) if _try_plan(input_shape, total // 2**k, min_levels)]
        raise ValueError(
            f"zf_dim={zf_dim} is not reachable for input {tuple(input_shape)}; choose one of {ok}"
        )
    return plans


def _try_plan(
    input_shape: tuple[int, int, int], zf_dim: int, min_levels: int
) -> list[LevelPlan] | None:
    c, h, w = input_shape
    numel = c * h * w
    plans: list[LevelPlan] = []
    while True:
        split = bool(plans) and numel // 2 >= zf_dim and c % 2 == 0
        if split:
            c, numel = c // 2, numel // 2
        squeeze = len(plans) < 2 and h % 2 == 0 and w % 2 == 0
        if squeeze:
            c, h, w = 4 * c, h // 2, w // 2
        if plans and not split and not squeeze and numel > zf_dim:
            return None
        plans.append(LevelPlan(split, squeeze, (c, h, w)))
        if numel == zf_dim and len(plans) >= min_levels:
            return plans
        if numel < zf_dim:
            return None


class MultiScaleGlow(Flow):
    """Image Glow f_w: x (B, C, H, W) -> flat z (B, C*H*W) = [z_aux | z_f].

    Args:
        input_shape: (C, H, W) of the data, e.g. (1, 28, 28).
        zf_dim: size of the deepest output z_f passed to h_phi.
        steps_per_level: Glow steps in each level.
        hidden: width of the coupling conditioners.
        logit_alpha: if set, the first layer is the logit transform of [0, 1] pixels.
        min_levels: number of levels, or more where ``zf_dim`` needs further factor-outs.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        zf_dim: int,
        steps_per_level: int,
        hidden: int,
        logit_alpha: float | None = 0.05,
        min_levels: int = 3,
    ):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.plans = plan_levels(self.input_shape, zf_dim, min_levels)
        self.zf_dim = zf_dim
        self.dim = math.prod(self.input_shape)
        self.aux_dim = self.dim - zf_dim
        self.preprocess = Logit(logit_alpha) if logit_alpha is not None else None
        self.squeeze = Squeeze()
        self.levels = nn.ModuleList(
            FlowSequence(image_glow_step(p.shape, hidden, i % 2) for i in range(steps_per_level))
            for p in self.plans
        )
        # Sizes of the factored-out pieces, in output order, for packing / unpacking.
        self.aux_shapes: list[tuple[int, int, int]] = []
        prev = None
        for p in self.plans:
            if p.split:
                self.aux_shapes.append((prev[0] // 2, prev[1], prev[2]))
            prev = p.shape
        self.final_shape = self.plans[-1].shape

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.preprocess is not None:
            x, logdet = self.preprocess(x)
        else:
            logdet = x.new_zeros(x.shape[0])
        pieces = []
        for plan, level in zip(self.plans, self.levels):
            if plan.split:
                out, x = split_channels(x, x.shape[1] // 2)
                pieces.append(out.flatten(1))
            if plan.squeeze:
                x, _ = self.squeeze(x)
            x, ld = level(x)
            logdet = logdet + ld
        pieces.append(x.flatten(1))
        return torch.cat(pieces, dim=1), logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b = z.shape[0]
        sizes = [math.prod(s) for s in self.aux_shapes] + [self.zf_dim]
        chunks = list(z.split(sizes, dim=1))
        x = chunks.pop().reshape(b, *self.final_shape)
        aux = [c.reshape(b, *s) for c, s in zip(chunks, self.aux_shapes)]
        logdet = z.new_zeros(b)
        for plan, level in zip(reversed(self.plans), reversed(self.levels)):
            x, ld = level.inverse(x)
            logdet = logdet + ld
            if plan.squeeze:
                x, _ = self.squeeze.inverse(x)
            if plan.split:
                x = torch.cat([aux.pop(), x], dim=1)
        if self.preprocess is not None:
            x, ld = self.preprocess.inverse(x)
            logdet = logdet + ld
        return x, logdet
