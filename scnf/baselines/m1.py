"""M1 of Kingma, Rezende, Mohamed & Welling (2014): a VAE on the 784 MNIST pixels.

    p(z) = N(0, I),  p(x | z) = prod_d Bernoulli(x_d | pi_d(z)),  q(z | x) = N(mu(x), diag s^2(x))
    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))

Sizes follow the paper (Sec. 4.1): two hidden layers of 600 softplus units in the encoder and
the decoder, a 50-dimensional latent. (The authors' released M1 for M1+M2 is 500-500; the
paper says 600.) Pixels are binarised afresh in every step, x ~ Bernoulli(intensity), as in
the authors' code (``gpulearn_z_x.py``, ``bernoulli_x``). M1 is trained without labels; its
posterior means (or samples) are the input of M2 in the stacked model M1+M2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from scnf.baselines.nets import bernoulli_log_prob, gaussian_kl_std_normal, mlp


class M1(nn.Module):
    """Variational auto-encoder with a Bernoulli likelihood on pixels.

    Args:
        x_dim: input dimensions (784 for MNIST).
        hidden: widths of the hidden layers of the encoder; the decoder mirrors them.
        z_dim: latent dimensions.
    """

    def __init__(self, x_dim: int = 784, hidden: Sequence[int] = (600, 600), z_dim: int = 50):
        super().__init__()
        self.x_dim, self.z_dim = x_dim, z_dim
        self.encoder = mlp([x_dim, *hidden, 2 * z_dim])
        self.decoder = mlp([z_dim, *reversed(hidden), x_dim])

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z | x), each ``(B, z_dim)``."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def elbo(self, x: Tensor, eps: Tensor | None = None) -> Tensor:
        """One-sample ELBO of each object, ``(B,)`` nats; ``eps`` is the N(0, I) noise."""
        mu, logvar = self.encode(x)
        if eps is None:
            eps = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * eps
        return bernoulli_log_prob(x, self.decoder(z)) - gaussian_kl_std_normal(mu, logvar)
