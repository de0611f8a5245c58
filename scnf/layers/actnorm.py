"""ActNorm (Kingma & Dhariwal, 2018): a per-channel affine map with data-dependent init."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scnf.layers.base import Flow, channel_view, spatial_size


class ActNorm(Flow):
    """z = (x - b) * exp(log_scale), per channel; works on (B, C) and (B, C, H, W).

    On the first forward pass in training mode, ``b`` and ``log_scale`` are set so
    that the output has zero mean and unit variance per channel over that batch.
    The ``initialized`` flag is a buffer (it survives checkpoints) mirrored by a
    Python bool, so the hot path never reads a device tensor (no host sync).
    """

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.log_scale = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps
        self.register_buffer("initialized", torch.tensor(False))
        self._initialized = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        key = prefix + "initialized"
        if key in state_dict:
            self._initialized = bool(state_dict[key])

    @torch.no_grad()
    def _init_from(self, x: Tensor) -> None:
        dims = [0] + list(range(2, x.dim()))
        mean = x.mean(dim=dims)
        std = x.std(dim=dims) if x.numel() // x.shape[1] > 1 else torch.ones_like(mean)
        self.bias.copy_(mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)
        self._initialized = True

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if not self._initialized and self.training:
            self._init_from(x)
        z = (x - channel_view(self.bias, x)) * channel_view(self.log_scale.exp(), x)
        logdet = (self.log_scale.sum() * spatial_size(x)).expand(x.shape[0])
        return z, logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = z * channel_view((-self.log_scale).exp(), z) + channel_view(self.bias, z)
        logdet = (-self.log_scale.sum() * spatial_size(z)).expand(z.shape[0])
        return x, logdet
