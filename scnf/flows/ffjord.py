"""FFJORD (Grathwohl et al., 2019): a continuous normalizing flow over torchdiffeq.

dz/dt = g(z, t); the log-density changes as d log p / dt = -tr(dg/dz). With the
data at t = 0 and the latent at t = T,

    log p(x) = log p(z(T)) + int_0^T tr(dg/dz(t)) dt,

so ``forward`` returns that integral as its log-det, in the same convention as
every discrete layer. The trace is exact. By default (``divergence="forward"``)
the Jacobian dg/dz is carried through the MLP layer by layer next to the
activations (one tangent per input dimension, a (B, dim, hidden) tensor), which costs
about ``dim`` extra forward passes and needs no double backward; the
alternative ``"autograd"`` takes one autograd pass per dimension (FFJORD's
own exact-trace path). Both give the same numbers; in 2-D the forward path is
about twice as fast to train (``benchmarks/toy_speed.py``).

Solver settings can differ between training and evaluation: ``train_method``,
``train_atol`` and ``train_rtol`` (None = the evaluation values) apply while
the module is in training mode, ``method``, ``atol`` and ``rtol`` in eval mode,
so a looser training solver never touches a reported number.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from scnf.layers.base import Flow

Divergence = Literal["forward", "autograd"]


class ODENet(nn.Module):
    """g(z, t): an MLP with tanh activations and the time appended to every layer's input."""

    def __init__(self, dim: int, hidden: int, num_layers: int):
        super().__init__()
        dims = [dim] + [hidden] * num_layers + [dim]
        self.layers = nn.ModuleList(nn.Linear(a + 1, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return self.forward_with_jacobian(t, z, jacobian=False)[0]

    def forward_with_jacobian(
        self, t: Tensor, z: Tensor, jacobian: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """g(z, t) and, if asked, its transposed Jacobian: (B, dim, dim), [b, i, j] = dg_j/dz_i.

        Forward mode by hand, one tangent per input dimension: for a = W_h h + w_t t + b the
        tangents map as T <- T W_h^T (one matmul over all B * dim rows), and through tanh
        they are scaled by 1 - tanh(a)^2; the time column has no tangent.
        """
        tt = t.to(z).expand(z.shape[0], 1)
        h, tangents = z, None
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            a = layer(torch.cat([h, tt], dim=1))
            if jacobian:
                w_h = layer.weight[:, :-1]  # drop the time column
                if tangents is None:  # d a / d z = W_h for every row
                    tangents = w_h.t().expand(z.shape[0], -1, -1)
                else:
                    tangents = tangents @ w_h.t()
            if i < last:
                a = torch.tanh(a)
                if jacobian:
                    tangents = tangents * (1.0 - a * a)[:, None, :]
            h = a
        return h, tangents


class _Dynamics(nn.Module):
    """Augmented dynamics (dz/dt, d logdet/dt) with the exact divergence tr(dg/dz)."""

    def __init__(self, net: ODENet, divergence: Divergence = "forward"):
        super().__init__()
        if divergence not in ("forward", "autograd"):
            raise ValueError(f"divergence must be 'forward' or 'autograd', got {divergence!r}")
        self.net = net
        self.divergence = divergence

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        z = state[0]
        if self.divergence == "forward":
            dz, jac_t = self.net.forward_with_jacobian(t, z)
            return dz, jac_t.diagonal(dim1=1, dim2=2).sum(1)
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
        method, atol, rtol: torchdiffeq solver and tolerances in eval mode.
        adjoint: use the adjoint method (O(1) memory) instead of backprop through the solver.
        train_method, train_atol, train_rtol: the same in training mode (None = eval's).
        divergence: "forward" (Jacobian carried through the MLP) or "autograd"; both exact.
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
        train_method: str | None = None,
        train_atol: float | None = None,
        train_rtol: float | None = None,
        divergence: Divergence = "forward",
    ):
        super().__init__()
        self.dynamics = _Dynamics(ODENet(dim, hidden, num_layers), divergence)
        self.dim = dim
        self.zf_dim, self.aux_dim = dim, 0  # as f_w of the toy data, all of z is z_f
        self.end_time = end_time
        self.method, self.atol, self.rtol, self.adjoint = method, atol, rtol, adjoint
        self.train_method = method if train_method is None else train_method
        self.train_atol = atol if train_atol is None else train_atol
        self.train_rtol = rtol if train_rtol is None else train_rtol

    def solver_options(self) -> dict[str, object]:
        """method, atol and rtol of the current mode (training or eval)."""
        if self.training:
            return dict(method=self.train_method, atol=self.train_atol, rtol=self.train_rtol)
        return dict(method=self.method, atol=self.atol, rtol=self.rtol)

    def _integrate(self, x: Tensor, t0: float, t1: float) -> tuple[Tensor, Tensor]:
        times = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
        state = (x, x.new_zeros(x.shape[0]))
        kwargs = self.solver_options()
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
