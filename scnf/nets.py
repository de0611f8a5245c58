"""Conditioner networks for coupling layers: ``net(x, context) -> (B, out, ...)``.

Both start from zero output (last layer zero-initialised) so couplings start
near the identity. ``context`` (a (B, E) tensor, e.g. a class embedding) is
concatenated to the input: to every pixel for images, to the features for vectors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def zero_init(layer: nn.Module) -> nn.Module:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    """in (+ context) -> [hidden, ReLU] x num_layers -> out; last layer zero-initialised."""

    def __init__(
        self, in_dim: int, out_dim: int, hidden: int, num_layers: int = 2, context_dim: int = 0
    ):
        super().__init__()
        dims = [in_dim + context_dim] + [hidden] * num_layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = zero_init(nn.Linear(dims[-1], out_dim))
        self.context_dim = context_dim

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_dim:
            x = _with_context(x, context)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x)

    def restricted(
        self, x_in: Tensor, context: Tensor | None, in_index: Tensor, out_index: Tensor
    ) -> Tensor:
        """``forward(x)[:, out_index]`` for an ``x`` that is zero outside ``in_index``.

        ``x_in`` holds only the ``in_index`` features: the first and last layers use the
        matching slices of their weights, so the zeros are never multiplied.
        """
        first, *rest = self.hidden
        x = _with_context(x_in, context) if self.context_dim else x_in
        x = F.relu(
            F.linear(
                x,
                first.weight.index_select(
                    1,
                    _with_context_index(
                        in_index, first.in_features - self.context_dim, self.context_dim
                    ),
                ),
                first.bias,
            )
        )
        for layer in rest:
            x = F.relu(layer(x))
        return F.linear(
            x, self.out.weight.index_select(0, out_index), self.out.bias.index_select(0, out_index)
        )


class ConvNet(nn.Module):
    """Glow's conditioner: conv3x3 -> ReLU -> conv1x1 -> ReLU -> zero-init conv3x3."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, context_dim: int = 0):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels + context_dim, hidden, 3, padding=1)
        self.conv_mid = nn.Conv2d(hidden, hidden, 1)
        self.conv_out = zero_init(nn.Conv2d(hidden, out_channels, 3, padding=1))
        self.context_dim = context_dim

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_dim:
            x = _with_context(x, context)
        h = F.relu(self.conv_in(x))
        h = F.relu(self.conv_mid(h))
        return self.conv_out(h)

    def restricted(
        self, x_in: Tensor, context: Tensor | None, in_index: Tensor, out_index: Tensor
    ) -> Tensor:
        """``forward(x)[:, out_index]`` for an ``x`` that is zero outside channels ``in_index``.

        The coupling layers' fast path: the first and last convolutions use the matching
        slices of their weights (same parameters, same function, about half the work there).
        """
        x = _with_context(x_in, context) if self.context_dim else x_in
        c_in = self.conv_in.in_channels - self.context_dim
        w_in = self.conv_in.weight.index_select(
            1, _with_context_index(in_index, c_in, self.context_dim)
        )
        h = F.relu(F.conv2d(x, w_in, self.conv_in.bias, padding=1))
        h = F.relu(self.conv_mid(h))
        w_out = self.conv_out.weight.index_select(0, out_index)
        return F.conv2d(h, w_out, self.conv_out.bias.index_select(0, out_index), padding=1)


def _with_context_index(in_index: Tensor, num_inputs: int, context_dim: int) -> Tensor:
    """Input positions of ``in_index`` followed by those of the context, appended after the data."""
    if not context_dim:
        return in_index
    extra = torch.arange(num_inputs, num_inputs + context_dim, device=in_index.device)
    return torch.cat([in_index, extra])


def _with_context(x: Tensor, context: Tensor | None) -> Tensor:
    if context is None:
        raise ValueError("this conditioner is conditional: pass a context tensor")
    if x.dim() == 4:
        context = context[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
    return torch.cat([x, context.to(x.dtype)], dim=1)
