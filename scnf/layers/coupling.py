"""Affine coupling (RealNVP / Glow) and its class-conditional version (the paper's h_phi).

A binary mask m marks the entries that condition the transform (kept as they
are); the others are transformed:

    z = m * x + (1 - m) * ((x + t) * sigmoid(s + 2)),   (s, t) = net(m * x, context)

``sigmoid(s + 2)`` is Glow's bounded, stable scale; the conditioner's last layer
is zero-initialised, so every coupling starts as a fixed scaling by
sigmoid(2) = 0.88. The *conditional* coupling of the paper (Sec. 3,
z2 = x2 * exp(s(x1, y)) + t(x1, y)) is this layer with a conditioner that also
reads the class context: nothing else changes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from scnf.layers.base import Flow, sum_except_batch


def channel_mask(shape: tuple[int, ...], parity: int) -> Tensor:
    """1 on the first half of the channels (dimension 0 of ``shape``), flipped if ``parity``."""
    c = shape[0]
    m = torch.zeros(shape)
    m[: c // 2] = 1.0
    return 1.0 - m if parity else m


def checkerboard_mask(shape: tuple[int, ...], parity: int) -> Tensor:
    """Checkerboard over (H, W), identical for every channel; needed when C = 1."""
    c, h, w = shape
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    m = ((ii + jj + parity) % 2).float()
    return m.expand(c, h, w).clone()


class AffineCoupling(Flow):
    """Masked affine coupling; ``net(x_cond, context) -> (B, 2*C, ...)`` gives (s, t).

    Args:
        mask: tensor of the per-sample shape, 1 where x conditions the transform.
        net: conditioner. It is conditional exactly when it uses ``context``.
    """

    def __init__(self, mask: Tensor, net: nn.Module):
        super().__init__()
        if not (0 < mask.sum() < mask.numel()):
            raise ValueError("coupling mask must keep some entries and transform others")
        self.register_buffer("mask", mask)
        self.net = net

    def _scale_shift(self, x_cond: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        # The conditioner may run in bf16 under autocast; the affine map and its log-det are
        # computed in the data's precision, so the flow stays exactly invertible.
        h = self.net(x_cond, context).to(x_cond.dtype)
        s, t = h.chunk(2, dim=1)
        return s + 2.0, t

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        m = self.mask
        x_cond = x * m
        s, t = self._scale_shift(x_cond, context)
        free = 1 - m
        z = x_cond + free * ((x + t) * torch.sigmoid(s))
        logdet = sum_except_batch(free * F.logsigmoid(s))
        return z, logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        m = self.mask
        z_cond = z * m
        s, t = self._scale_shift(z_cond, context)
        free, log_scale = 1 - m, F.logsigmoid(s)
        x = z_cond + free * (z * torch.exp(-log_scale) - t)
        logdet = -sum_except_batch(free * log_scale)
        return x, logdet
