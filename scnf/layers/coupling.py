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


def _channel_halves(mask: Tensor) -> tuple[Tensor, Tensor] | None:
    """(conditioning, transformed) channel indices if ``mask`` splits the channels (dimension 0)
    into two contiguous blocks, each constant over the other dimensions; else None."""
    per_channel = mask.reshape(mask.shape[0], -1)
    if not bool((per_channel == per_channel[:, :1]).all()):
        return None
    keep = per_channel[:, 0] > 0.5
    cond, free = keep.nonzero().flatten(), (~keep).nonzero().flatten()
    contiguous = [bool((ix.diff() == 1).all()) for ix in (cond, free)]
    if not all(contiguous) or (cond[0] != 0 and free[0] != 0):
        return None
    return cond, free


class AffineCoupling(Flow):
    """Masked affine coupling; ``net(x_cond, context) -> (B, 2*C, ...)`` gives (s, t).

    Args:
        mask: tensor of the per-sample shape, 1 where x conditions the transform.
        net: conditioner. It is conditional exactly when it uses ``context``.
    """

    # Fast path for channel masks (every Glow step here except C = 1 checkerboards): gather the
    # two halves and give the conditioner only its live inputs and outputs (``net.restricted``),
    # instead of multiplying zeros. Same parameters and function; False forces the mask path.
    split_channels = True

    def __init__(self, mask: Tensor, net: nn.Module):
        super().__init__()
        if not (0 < mask.sum() < mask.numel()):
            raise ValueError("coupling mask must keep some entries and transform others")
        self.register_buffer("mask", mask)
        self.net = net
        halves = _channel_halves(mask)
        self._split = halves is not None and hasattr(net, "restricted")
        if self._split:
            cond, free = halves
            c = mask.shape[0]
            # Not in the state dict: derived from the mask, so older checkpoints still load.
            self.register_buffer("cond_index", cond, persistent=False)
            self.register_buffer("free_index", free, persistent=False)
            self.register_buffer("st_index", torch.cat([free, c + free]), persistent=False)
            self._cond_first = bool(cond[0] == 0)

    def _scale_shift(self, x_cond: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        # The conditioner may run in bf16 under autocast; the affine map and its log-det are
        # computed in the data's precision, so the flow stays exactly invertible.
        h = self.net(x_cond, context).to(x_cond.dtype)
        s, t = h.chunk(2, dim=1)
        return s + 2.0, t

    def _split_scale_shift(self, x_cond: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """(s + 2, t) of the transformed channels only, from the conditioning channels only."""
        h = self.net.restricted(x_cond, context, self.cond_index, self.st_index).to(x_cond.dtype)
        s, t = h.chunk(2, dim=1)
        return s + 2.0, t

    def _join(self, x_cond: Tensor, x_free: Tensor) -> Tensor:
        return torch.cat([x_cond, x_free] if self._cond_first else [x_free, x_cond], dim=1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self._split and self.split_channels:
            x_cond = x.index_select(1, self.cond_index)
            s, t = self._split_scale_shift(x_cond, context)
            z_free = (x.index_select(1, self.free_index) + t) * torch.sigmoid(s)
            return self._join(x_cond, z_free), sum_except_batch(F.logsigmoid(s))
        m = self.mask
        x_cond = x * m
        s, t = self._scale_shift(x_cond, context)
        free = 1 - m
        z = x_cond + free * ((x + t) * torch.sigmoid(s))
        logdet = sum_except_batch(free * F.logsigmoid(s))
        return z, logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self._split and self.split_channels:
            z_cond = z.index_select(1, self.cond_index)
            s, t = self._split_scale_shift(z_cond, context)
            log_scale = F.logsigmoid(s)
            x_free = z.index_select(1, self.free_index) * torch.exp(-log_scale) - t
            return self._join(z_cond, x_free), -sum_except_batch(log_scale)
        m = self.mask
        z_cond = z * m
        s, t = self._scale_shift(z_cond, context)
        free, log_scale = 1 - m, F.logsigmoid(s)
        x = z_cond + free * (z * torch.exp(-log_scale) - t)
        logdet = -sum_except_batch(free * log_scale)
        return x, logdet
