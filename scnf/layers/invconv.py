"""Invertible 1x1 convolution (Glow), LU-parametrised so the log-det is a sum of logs."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from scnf.layers.base import Flow, spatial_size


class InvertibleLinear(Flow):
    """z = W x over the channel dimension, W = P L (U + diag(sign(s) exp(log|s|))).

    On images (B, C, H, W) this is Glow's invertible 1x1 convolution; on vectors
    (B, C) it is an invertible dense layer. P is a fixed permutation, L is unit
    lower-triangular and U strictly upper-triangular, so log|det W| = sum(log|s|):
    no ``slogdet``, no float64 and no host-device sync per step. Initialised at a
    random rotation (Glow's choice), which mixes channels from the start.
    """

    gather_permutation = True  # False: the plain P @ L @ U (benchmarks compare the two)
    # On a batch of fewer vectors than channels (h_phi at z_f 784: 64 or 640 rows of 784),
    # apply U, then L, to the rows instead of building W = L U: 4 B C^2 FLOPs instead of
    # 2 C^3 + 2 B C^2, the same map. False: always build W (benchmarks compare the two).
    factors_for_few_rows = True

    def __init__(self, num_channels: int, generator: torch.Generator | None = None):
        super().__init__()
        c = num_channels
        w = torch.linalg.qr(torch.randn(c, c, generator=generator, dtype=torch.float64))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        rows, cols = torch.tril_indices(c, c, offset=-1)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("tril_rows", rows)
        self.register_buffer("tril_cols", cols)
        # Only the free entries are parameters (none when C = 1, a plain scale).
        self.lower = nn.Parameter(lower[rows, cols].float())
        self.upper = nn.Parameter(upper.T[rows, cols].float())
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).float())

    def factors(self) -> tuple[Tensor, Tensor]:
        """(L, U + diag(s)) as dense C x C matrices; W = P L U."""
        c = self.log_s.shape[0]
        idx = (self.tril_rows, self.tril_cols)
        lower = torch.eye(c, device=self.log_s.device, dtype=self.log_s.dtype)
        lower = lower.index_put(idx, self.lower)
        upper = torch.diag(self.sign_s * self.log_s.exp()).index_put(
            (self.tril_cols, self.tril_rows), self.upper
        )
        return lower, upper

    def weight(self) -> Tensor:
        lower, upper = self.factors()
        if self.gather_permutation:
            # P @ M as a row gather: the same numbers (P holds one 1 per row), one C^3 matmul less.
            return (lower @ upper)[self.perm.argmax(dim=1)]
        return self.perm @ lower @ upper

    @staticmethod
    def _mix(w: Tensor, x: Tensor) -> Tensor:
        if x.dim() == 2:
            return x @ w.T
        if x.dim() == 4:
            return F.conv2d(x, w[:, :, None, None])
        raise ValueError(f"InvertibleLinear takes (B, C) or (B, C, H, W), got {tuple(x.shape)}")

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # Never autocast to bf16: log|det W| = sum(log|s|) is exact only for the map actually
        # applied to the data, so W and W x stay in the data's precision.
        with torch.autocast(x.device.type, enabled=False):
            if self.factors_for_few_rows and x.dim() == 2 and x.shape[0] < x.shape[1]:
                # x W^T = ((x U^T) L^T) P^T: P^T permutes columns, (P M)[i] = M[perm[i]].
                lower, upper = (m.to(x.dtype) for m in self.factors())
                z = ((x @ upper.T) @ lower.T)[:, self.perm.argmax(dim=1)]
            else:
                z = self._mix(self.weight().to(x.dtype), x)
        logdet = (self.log_s.sum() * spatial_size(x)).expand(x.shape[0])
        return z, logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # The inverse is rare (sampling, reconstructions): a plain matrix inverse is fine.
        with torch.autocast(z.device.type, enabled=False):
            x = self._mix(torch.linalg.inv(self.weight()).to(z.dtype), z)
        logdet = (-self.log_s.sum() * spatial_size(z)).expand(z.shape[0])
        return x, logdet
