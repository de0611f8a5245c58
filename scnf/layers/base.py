"""The one layer contract every invertible transform follows.

``forward(x, context=None) -> (z, logdet)`` maps data to latent and
``inverse(z, context=None) -> (x, logdet)`` maps back; ``logdet`` has shape
``(B,)`` and is log |det dz/dx| for ``forward`` and log |det dx/dz| for
``inverse`` (so the two sum to zero). Unconditional layers accept ``context``
and ignore it; conditional ones pass it to their conditioner network.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from torch import Tensor, nn


class Flow(nn.Module):
    """Base class of an invertible map with a tractable log-determinant."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class FlowSequence(Flow):
    """Composition f_n o ... o f_1; log-determinants add up."""

    def __init__(self, layers: Iterable[Flow]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x, context)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = z.new_zeros(z.shape[0])
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z, context)
            logdet = logdet + ld
        return z, logdet


def spatial_size(x: Tensor) -> int:
    """Number of positions a per-channel parameter is shared over (1 for vectors)."""
    n = 1
    for s in x.shape[2:]:
        n *= s
    return n


def channel_view(param: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-channel vector ``(C,)`` so it broadcasts against ``x`` of shape (B, C, ...)."""
    return param.view(1, -1, *([1] * (x.dim() - 2)))


def sum_except_batch(x: Tensor) -> Tensor:
    return x.flatten(1).sum(dim=1)


def standard_normal_logprob(z: Tensor) -> Tensor:
    """log N(z | 0, I) summed over all but the batch dimension."""
    # A Python float constant: no host-to-device copy inside a training step.
    return -0.5 * sum_except_batch(z.pow(2)) - 0.5 * z[0].numel() * math.log(2 * math.pi)
