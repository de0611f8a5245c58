"""SCNF: an unconditional flow f_w composed with a conditional density h_phi on z_f.

    log p(x, y) = log|det df_w/dx| + log N(z_aux | 0, I) + log p(z_f | y) + log p(y)

(paper eqs. 3-4). f_w does not see y, so log p(x) and p(y|x) need ONE pass of
f_w and one batched pass of h_phi over the K classes (``log_joint_all``).

Input space: whatever f_w takes. For the MNIST presets, x is a (B, 1, 28, 28)
tensor of dequantised pixels in [0, 1] (``(k + u) / 256``) and the logit transform
is f_w's first layer, so every value here is a density on [0, 1]^784 in nats;
``scnf.data.preprocess.bits_per_dim`` converts to bits/dim of 8-bit pixels. For
the toy presets x is a (B, 2) tensor of raw coordinates.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scnf.conditional import ConditionalDensity
from scnf.layers import Flow, split_channels, standard_normal_logprob


class SCNF(nn.Module):
    """Semi-conditional normalizing flow.

    Args:
        flow: f_w, mapping x to a flat z = [z_aux | z_f] (the last ``flow.zf_dim`` entries are
            z_f, the first ``flow.aux_dim`` are z_aux).
        head: h_phi, a ``ConditionalDensity`` on z_f.
        class_prior: p(y) as K probabilities; uniform if omitted (the paper's choice).
    """

    def __init__(self, flow: Flow, head: ConditionalDensity, class_prior: Tensor | None = None):
        super().__init__()
        self.flow = flow
        self.head = head
        k = head.num_classes
        prior = torch.full((k,), 1.0 / k) if class_prior is None else torch.as_tensor(class_prior)
        if prior.shape != (k,) or not torch.isclose(
            prior.sum(), torch.tensor(1.0, dtype=prior.dtype)
        ):
            raise ValueError(f"class_prior must be {k} probabilities summing to 1, got {prior}")
        self.register_buffer("log_prior", prior.float().log())
        if head.dim != flow.zf_dim:
            raise ValueError(f"h_phi models {head.dim} dims but f_w's z_f has {flow.zf_dim}")
        self.zf_dim = flow.zf_dim

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """One pass of f_w: z_f and the class-independent part log|det| + log N(z_aux)."""
        z, logdet = self.flow(x)
        z_aux, z_f = split_channels(z, self.zf_dim)
        return z_f, logdet + standard_normal_logprob(z_aux)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x -> (z_f, z_aux), both flat: (B, zf_dim) and (B, D - zf_dim)."""
        z_aux, z_f = split_channels(self.flow(x)[0], self.zf_dim)
        return z_f, z_aux

    def decode(self, z_f: Tensor, z_aux: Tensor) -> Tensor:
        """(z_f, z_aux) -> x = f_w^{-1}([z_aux | z_f]). Fig. 2 passes z_aux = 0."""
        return self.flow.inverse(torch.cat([z_aux, z_f], dim=1))[0]

    def log_joint(self, x: Tensor, y: Tensor) -> Tensor:
        """log p(x, y), shape (B,)."""
        z_f, base = self._encode(x)
        return base + self.head.log_prob(z_f, y) + self.log_prior[y]

    def log_joint_all(self, x: Tensor) -> Tensor:
        """log p(x, y = k) for every k, shape (B, K); f_w runs once."""
        z_f, base = self._encode(x)
        return base[:, None] + self.head.log_prob_all(z_f) + self.log_prior[None]

    def log_marginal(self, x: Tensor) -> Tensor:
        """log p(x) = logsumexp_k log p(x, k), shape (B,)."""
        return torch.logsumexp(self.log_joint_all(x), dim=1)

    def log_posterior(self, x: Tensor) -> Tensor:
        """log p(y | x), shape (B, K); rows sum to one in probability space."""
        return torch.log_softmax(self.log_joint_all(x), dim=1)

    @torch.no_grad()
    def sample(self, y: Tensor, temperature: float = 1.0) -> Tensor:
        """Draw x ~ p(x | y): z_h, z_aux ~ N(0, T^2 I), z_f = h_phi^{-1}(z_h, y)."""
        b = y.shape[0]
        dev = self.log_prior.device
        u = temperature * torch.randn(b, self.zf_dim, device=dev)
        z_f = self.head.sample_latent_to_zf(u, y)
        z_aux = temperature * torch.randn(b, self.flow.aux_dim, device=dev)
        return self.decode(z_f, z_aux)
