"""Building blocks of the Kingma et al. (2014) baselines: softplus MLPs and log-densities.

Everything is per object (shape ``(B,)`` after summing over dimensions) and in nats. The KL
divergence between the diagonal Gaussian posterior and the standard normal prior is analytic
(their "gaussianmarg" estimator), the likelihood term is a Monte-Carlo sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

LOG_2PI = math.log(2.0 * math.pi)


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of widths ``sizes`` with softplus between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if i:
            layers.append(nn.Softplus())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


def gaussian_kl_std_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)), summed over the last dimension."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(-1)


def gaussian_log_prob(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(x | mu, diag exp(logvar)), summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (x - mu).square() * torch.exp(-logvar)).sum(-1)


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """log Bernoulli(x | sigmoid(logits)), summed over the last dimension (x in {0, 1})."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def soft_floor(raw: Tensor, floor: float) -> Tensor:
    """``floor + softplus(raw - floor)``: a smooth lower bound on a log-variance.

    A Gaussian likelihood whose variance may shrink to zero has an unbounded density; the
    floor (log 1e-4 by default in M2) keeps the bound finite without cutting gradients.
    """
    return floor + F.softplus(raw - floor)
