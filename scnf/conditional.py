"""The conditional part h_phi: a density of z_f given the class y.

Two kinds, one interface:
    ``log_prob(z, y) -> (B,)``      log p(z_f | y)
    ``log_prob_all(z) -> (B, K)``   log p(z_f | y = k) for every class, in ONE batched call.

* ``ConditionalGlow``: z_h = h_phi(z_f, y) with conditional couplings; the class
  enters through a trainable embedding (initialised to one-hot, as the authors did)
  that is concatenated to every conditioner's input; z_h ~ N(0, I).
* ``ClassGaussian`` ("GMM"): N(z_f | mu_y, diag(sigma_y^2)), learnable per class, or set
  in closed form from responsibility-weighted moments (the M-step of EM-SGD).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from scnf.flows.glow import VectorGlow
from scnf.layers import ActNorm, InvertibleLinear, standard_normal_logprob


class ConditionalDensity(nn.Module):
    """Interface of h_phi. Subclasses implement ``log_prob_all``; ``log_prob`` may be faster."""

    num_classes: int
    dim: int

    def log_prob(self, z: Tensor, y: Tensor) -> Tensor:
        return self.log_prob_all(z).gather(1, y[:, None]).squeeze(1)

    def log_prob_all(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def sample_latent_to_zf(self, u: Tensor, y: Tensor) -> Tensor:
        """Map a N(0, I) draw u to z_f ~ p(z_f | y) (used by ``SCNF.sample``)."""
        raise NotImplementedError


class ConditionalGlow(ConditionalDensity):
    """Conditional Glow on flat z_f: ActNorm -> LU linear -> conditional affine coupling."""

    def __init__(
        self, dim: int, num_classes: int, num_steps: int, hidden: int, num_layers: int = 2
    ):
        super().__init__()
        self.dim, self.num_classes = dim, num_classes
        self.embedding = nn.Embedding(num_classes, num_classes)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.eye(num_classes))
        self.flow = VectorGlow(dim, num_steps, hidden, num_layers, context_dim=num_classes)

    def log_prob(self, z: Tensor, y: Tensor) -> Tensor:
        u, logdet = self.flow(z, self.embedding(y))
        return standard_normal_logprob(u) + logdet

    # The first step's ActNorm and LU linear do not see the class: apply them once per object
    # and replicate after them (the same numbers; at z_f 784 that layer is a large share of the
    # head's cost). False forces one pass of all layers over the replicated batch.
    share_class_free_layers = True

    def log_prob_all(self, z: Tensor) -> Tensor:
        b, k = z.shape[0], self.num_classes
        layers = [layer for step in self.flow.layers for layer in step.layers]
        shared = 0
        if self.share_class_free_layers:
            while isinstance(layers[shared], (ActNorm, InvertibleLinear)):
                shared += 1
            # ActNorm's data-dependent init must see the replicated batch, as the plain path's.
            if any(isinstance(m, ActNorm) and not m._initialized for m in layers[:shared]):
                shared = 0
        logdet = z.new_zeros(b)
        for layer in layers[:shared]:
            z, ld = layer(z)
            logdet = logdet + ld
        # Class-major replication: rows [k*B, (k+1)*B) carry class k; one pass of K*B rows.
        y = torch.arange(k, device=z.device).repeat_interleave(b)
        u, context, logdet = z.repeat(k, 1), self.embedding(y), logdet.repeat(k)
        for layer in layers[shared:]:
            u, ld = layer(u, context)
            logdet = logdet + ld
        return (standard_normal_logprob(u) + logdet).view(k, b).T

    def sample_latent_to_zf(self, u: Tensor, y: Tensor) -> Tensor:
        """h_phi^{-1}(u, y): map a base sample to z_f for class y."""
        return self.flow.inverse(u, self.embedding(y))[0]


class ClassGaussian(ConditionalDensity):
    """Class-conditional diagonal Gaussian ("SCNF-GMM"); closed-form log-density."""

    def __init__(self, dim: int, num_classes: int, mean_scale: float = 1.0):
        super().__init__()
        self.dim, self.num_classes = dim, num_classes
        # Distinct random means break the symmetry between classes from the start.
        self.means = nn.Parameter(mean_scale * torch.randn(num_classes, dim))
        self.log_scales = nn.Parameter(torch.zeros(num_classes, dim))

    def log_prob_all(self, z: Tensor) -> Tensor:
        return self._gaussian(z[:, None, :], self.means[None], self.log_scales[None])

    def log_prob(self, z: Tensor, y: Tensor) -> Tensor:
        return self._gaussian(z, self.means[y], self.log_scales[y])

    def _gaussian(self, z: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
        """log N(z; mean, diag(exp(log_scale))^2) summed over the last axis (broadcasts)."""
        diff = (z - mean) * torch.exp(-log_scale)
        norm = 0.5 * self.dim * math.log(2 * math.pi)
        return -0.5 * diff.pow(2).sum(-1) - log_scale.sum(-1) - norm

    def sample_latent_to_zf(self, u: Tensor, y: Tensor) -> Tensor:
        return self.means[y] + u * torch.exp(self.log_scales[y])

    @staticmethod
    def moments(z: Tensor, weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Weighted sufficient statistics, float64: (sum_j w_jk, sum_j w_jk z_j, sum_j w_jk z_j^2).

        ``z`` is (N, D), ``weights`` (N, K) (one-hot rows for labelled objects, responsibilities
        for unlabelled ones); the results are (K,), (K, D), (K, D) and add up over batches.
        """
        z, w = z.double(), weights.double()
        return w.sum(0), w.T @ z, w.T @ z.pow(2)

    @torch.no_grad()
    def set_from_moments_(
        self, s0: Tensor, s1: Tensor, s2: Tensor, var_floor: float = 1e-3
    ) -> None:
        """The closed-form M-step: mu_k = s1_k / s0_k, sigma_k^2 = max(s2_k / s0_k - mu_k^2, floor).

        These maximise sum_j sum_k w_jk log N(z_j | mu_k, diag(sigma_k^2)) for fixed z and w
        (the floor keeps a class from collapsing onto a few points). A class with no weight
        (s0_k < 1e-8) keeps its parameters.
        """
        ok = s0 > 1e-8
        n = s0.clamp_min(1e-8)[:, None]
        mean = s1 / n
        var = (s2 / n - mean.pow(2)).clamp_min(var_floor)
        self.means[ok] = mean[ok].to(self.means.dtype)
        self.log_scales[ok] = (0.5 * var.log())[ok].to(self.log_scales.dtype)
