"""FFJORD (Grathwohl et al., 2019): a continuous normalizing flow over torchdiffeq.

dz/dt = g(z, t); the log-density changes as d log p / dt = -tr(dg/dz). With the
data at t = 0 and the latent at t = T,

    log p(x) = log p(z(T)) + int_0^T tr(dg/dz(t)) dt,

so ``forward`` returns that integral as its log-det, in the same convention as
every discrete layer. The trace is computed exactly (one autograd pass per
dimension), which is cheap in 2-D.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from scnf.layers.base import Flow


class ODENet(nn.Module):
    """g(z, t): an MLP with tanh activations and the time appended to every layer's input."""

    def __init__(self, dim: int, hidden: int, num_layers: int):
        super().__init__()
        dims = [dim] + [hidden] * num_layers + [dim]
        self.layers = nn.ModuleList(nn.Linear(a + 1, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        tt = t.to(z).expand(z.shape[0], 1)
        h = z
        for i, layer in enumerate(self.layers):
            h = layer(torch.cat([h, tt], dim=1))
            if i < len(self.layers) - 1:
                h = torch.tanh(h)
        return h


class _Dynamics(nn.Module):
    """Augmented dynamics (dz/dt, d logdet/dt) with the exact divergence."""

    def __init__(self, net: ODENet):
        super().__init__()
        self.net = net

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        z = state[0]
        # Keep the graph only when the caller differentiates (training, Jacobian tests).
        build_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            dz = self.net(t, z)
            div = z.new_zeros(z.shape[0])
            for i in range(z.shape[1]):
                grad_i = torch.autograd.grad(
                    dz[:, i].sum(), z, create_graph=build_graph, retain_graph=True
                )[0]
                div = div + grad_i[:, i]
        if not build_graph:
            dz, div = dz.detach(), div.detach()
        return dz, div


class FFJORD(Flow):
    """Continuous normalizing flow on (B, dim) vectors.

    Args:
        dim: data dimension (2 for the toy problems).
        hidden, num_layers: size of the ODE network.
        end_time: integration interval [0, T].
        method, atol, rtol: torchdiffeq solver and tolerances.
        adjoint: use the adjoint method (O(1) memory) instead of backprop through the solver.
    """

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 64,
        num_layers: int = 3,
        end_time: float = 1.0,
        method: str = "dopri5",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        adjoint: bool = False,
    ):
        super().__init__()
        self.dynamics = _Dynamics(ODENet(dim, hidden, num_layers))
        self.dim = dim
        self.zf_dim, self.aux_dim = dim, 0  # as f_w of the toy data, all of z is z_f
        self.end_time = end_time
        self.method, self.atol, self.rtol, self.adjoint = method, atol, rtol, adjoint

    def _integrate(self, x: Tensor, t0: float, t1: float) -> tuple[Tensor, Tensor]:
        times = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
        state = (x, x.new_zeros(x.shape[0]))
        kwargs = dict(method=self.method, atol=self.atol, rtol=self.rtol)
        if self.adjoint:
            out = odeint_adjoint(
                self.dynamics, state, times, adjoint_params=tuple(self.parameters()), **kwargs
            )
        else:
            out = odeint(self.dynamics, state, times, **kwargs)
        z, integral = out[0][-1], out[1][-1]
        return z, integral

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._integrate(x, 0.0, self.end_time)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # Integrating from T back to 0 accumulates -int tr = log|det dx/dz|.
        return self._integrate(z, self.end_time, 0.0)
