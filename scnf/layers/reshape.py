"""Volume-preserving reshapes of the multi-scale architecture: squeeze and split."""

from __future__ import annotations

from torch import Tensor

from scnf.layers.base import Flow


class Squeeze(Flow):
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 block becomes 4 channels. log-det 0."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"Squeeze needs even height and width, got {h}x{w}")
        z = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return z.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c4, h, w = z.shape
        c = c4 // 4
        x = z.view(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c, 2 * h, 2 * w), z.new_zeros(b)


def split_channels(x: Tensor, keep: int) -> tuple[Tensor, Tensor]:
    """Factor out the first ``C - keep`` channels (z_aux part) and keep the last ``keep``.

    The multi-scale flow (``scnf.flows.glow.MultiScaleGlow``) applies this between
    levels; it is a bookkeeping step with log-det 0, so it is a function, not a layer.
    """
    return x[:, : x.shape[1] - keep], x[:, x.shape[1] - keep :]
