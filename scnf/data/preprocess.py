"""Dequantisation of 8-bit images and the bits-per-dimension conversion.

Both follow the authors' pipeline (``ToTensor`` then ``UniformNoise``: x = (k + u) / 256)
and their ``bits_dim`` (bpd = 8 - mean log p(x) / (D ln 2)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def dequantize(images_uint8: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantisation x = (k + u) / 256, u ~ U[0, 1), of 8-bit pixel values k.

    Turns the discrete images into a continuous variable on [0, 1)^D, so that a density
    model's log-likelihood is a lower bound on the discrete one (Theis et al., 2016).
    Fresh noise on every call, as in the authors' data loader.

    Args:
        images_uint8: uint8 tensor (N, 28, 28) or (N, C, H, W), on any device.
        generator: optional generator for the noise, on the same device as the images.

    Returns:
        float32 tensor in [0, 1) of shape (N, 1, 28, 28) (a channel axis is added to 3-D
        input), on the input's device.
    """
    if images_uint8.dtype != torch.uint8:
        raise TypeError(f"expected uint8 pixel values, got {images_uint8.dtype}")
    if images_uint8.dim() == 3:
        images_uint8 = images_uint8.unsqueeze(1)
    if images_uint8.dim() != 4:
        raise ValueError(f"expected (N, H, W) or (N, C, H, W), got {tuple(images_uint8.shape)}")
    k = images_uint8.to(torch.float32)
    noise = torch.rand(k.shape, generator=generator, device=k.device, dtype=torch.float32)
    # In float32, k + u rounds up to k + 1 for u within ~2^-16 of 1 (and 255 + u to 256,
    # i.e. x = 1.0). Keep every x strictly inside its bin [k/256, (k+1)/256).
    upper = torch.nextafter((k + 1.0) / 256.0, torch.zeros((), device=k.device))
    return torch.minimum((k + noise) / 256.0, upper)


def bits_per_dim(log_px_nats: Tensor | float, num_dims: int) -> Tensor | float:
    """Bits per dimension in 8-bit pixel space from log p(x) in nats on [0, 1]^D.

    With x = (k + u) / 256 the same point on the pixel scale [0, 256)^D is 256 x, whose
    density is p(x) / 256^D. Hence -log2 p_pixel = -log2 p(x) + D log2 256, i.e. per
    dimension ``bpd = -log p(x) / (D ln 2) + 8``. The +8 (= log2 256) is what makes the
    number comparable with published MNIST/CIFAR bits/dim (and bounds the discrete
    code length from above, by the dequantisation argument).

    Args:
        log_px_nats: log-density of the [0, 1]^D data in nats (a tensor of any shape, or a float).
        num_dims: D, e.g. 784 for MNIST or 2 for the toy data.

    Returns:
        bits per dimension, with the type and shape of ``log_px_nats``.
    """
    if num_dims < 1:
        raise ValueError(f"num_dims must be positive, got {num_dims}")
    return -log_px_nats / (num_dims * math.log(2.0)) + 8.0
