"""The logit transform used as the first layer of the MNIST flow (as the authors did)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from scnf.layers.base import Flow, sum_except_batch


class Logit(Flow):
    """x in [0, 1] -> logit(alpha/2 + (1 - alpha) x), with its exact log-det.

    alpha = 0.05 keeps the input away from 0 and 1 (Dinh et al., 2017). The
    log-det per entry is log(1 - alpha) - log(p) - log(1 - p), p = alpha/2 + (1-alpha) x,
    so likelihoods are densities on [0, 1]^D of the dequantised data.
    """

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        p = self.alpha / 2 + (1 - self.alpha) * x
        z = torch.log(p) - torch.log1p(-p)
        # -log p - log(1-p) = softplus(z) + softplus(-z)
        logdet = sum_except_batch(F.softplus(z) + F.softplus(-z) + math.log(1 - self.alpha))
        return z, logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        p = torch.sigmoid(z)
        x = (p - self.alpha / 2) / (1 - self.alpha)
        logdet = -sum_except_batch(F.softplus(z) + F.softplus(-z) + math.log(1 - self.alpha))
        return x, logdet
