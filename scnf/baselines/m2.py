"""M2 of Kingma, Rezende, Mohamed & Welling (2014): the semi-supervised generative model.

    p(y) = Cat(1/K),  p(z) = N(0, I),  p(x | y, z) = f(x; y, z)
    q(z | x, y) = N(mu(x, y), diag s^2(x, y)),  q(y | x) = Cat(pi(x))   (the classifier)

Bounds (their eqs. 6-7, here as lower bounds to maximise):

    L(x, y) = E_{q(z|x,y)}[log p(x | y, z)] + log p(y) - KL(q(z | x, y) || p(z))
    U(x)    = sum_y q(y | x) L(x, y) + H(q(y | x))

and the objective (their eq. 9), to maximise over the training set of N objects,

    J^alpha = sum_labelled L(x, y) + sum_unlabelled U(x) + alpha * mean_labelled log q(y | x),

with alpha = 0.1 N (their choice), i.e. a weight of 0.1 N / N_l per labelled object.
``f`` is a Bernoulli on pixels (M2 alone) or a diagonal Gaussian on M1's 50-d latent (M1+M2,
as in the authors' code). One hidden layer of softplus units in each network (the paper: 500;
the authors' M1+M2 script for 100 labels: 300), a 50-d z. Labels enter the encoder and the
decoder as one-hot vectors concatenated with the input; the first layer is written as
``W_x x + W_y y`` so that the unlabelled bound computes ``W_x x`` once for all K classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from scnf.baselines.nets import (
    bernoulli_log_prob,
    gaussian_kl_std_normal,
    gaussian_log_prob,
    soft_floor,
)

Likelihood = Literal["bernoulli", "gaussian"]
LOGVAR_FLOOR = math.log(1e-4)  # variance floor of the Gaussian likelihood (see soft_floor)


class _YLinear(nn.Module):
    """``W_a a + W_y onehot(y) + b`` for inputs ``a`` of shape ``(..., in)`` and classes ``y``."""

    def __init__(self, in_dim: int, n_classes: int, out_dim: int):
        super().__init__()
        self.a = nn.Linear(in_dim, out_dim)
        self.y = nn.Embedding(n_classes, out_dim)  # = a bias-free Linear on one-hot y
        nn.init.normal_(self.y.weight, std=1.0 / math.sqrt(in_dim + n_classes))


@dataclass
class M2Terms:
    """One step's objective and its parts (tensors, no host sync)."""

    loss: Tensor  # -J^alpha / N: nats per training object, to minimise
    bound: Tensor  # (sum_l L + sum_u U) / N estimate, nats per object
    clf: Tensor  # mean -log q(y | x) over the labelled rows
    correct: Tensor  # labelled rows classified correctly


class M2(nn.Module):
    """The M2 model: classifier q(y|x), encoder q(z|x,y), decoder p(x|y,z).

    Args:
        x_dim: input dimensions (784 pixels, or M1's active latent dimensions).
        hidden: width of the single hidden layer of each of the three networks.
        z_dim: latent dimensions.
        n_classes: K.
        likelihood: ``bernoulli`` (binary pixels) or ``gaussian`` (real-valued features).
    """

    def __init__(
        self,
        x_dim: int,
        hidden: int = 500,
        z_dim: int = 50,
        n_classes: int = 10,
        likelihood: Likelihood = "bernoulli",
    ):
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', not {likelihood!r}")
        self.x_dim, self.z_dim, self.n_classes = x_dim, z_dim, n_classes
        self.likelihood = likelihood
        self.classifier = nn.Sequential(
            nn.Linear(x_dim, hidden), nn.Softplus(), nn.Linear(hidden, n_classes)
        )
        self.enc_in = _YLinear(x_dim, n_classes, hidden)
        self.enc_out = nn.Linear(hidden, 2 * z_dim)
        self.dec_in = _YLinear(z_dim, n_classes, hidden)
        self.dec_out = nn.Linear(hidden, x_dim * (1 if likelihood == "bernoulli" else 2))
        self.log_prior_y = -math.log(n_classes)  # uniform p(y), as the authors (uniform_y)

    # --- the three networks ------------------------------------------------------------

    def classify(self, x: Tensor) -> Tensor:
        """Logits of q(y | x), ``(B, K)``."""
        return self.classifier(x)

    def log_px(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        """log p(x | y, z) for x ``(..., x_dim)``, y ``(...)``, z ``(..., z_dim)``: ``(...)``."""
        out = self.dec_out(F.softplus(self.dec_in.a(z) + self.dec_in.y(y)))
        if self.likelihood == "bernoulli":
            return bernoulli_log_prob(x, out)
        mu, raw = out.chunk(2, dim=-1)
        return gaussian_log_prob(x, mu, soft_floor(raw, LOGVAR_FLOOR))

    def _bound(self, x: Tensor, hx: Tensor, y: Tensor, eps: Tensor) -> Tensor:
        """L(x, y) given the encoder's x-part ``hx = W_x x + b`` (broadcast over classes)."""
        mu, logvar = self.enc_out(F.softplus(hx + self.enc_in.y(y))).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.log_px(x, y, z) + self.log_prior_y - gaussian_kl_std_normal(mu, logvar)

    # --- bounds --------------------------------------------------------------------------

    def labelled_bound(self, x: Tensor, y: Tensor, eps: Tensor | None = None) -> Tensor:
        """One-sample L(x, y) of each object, ``(B,)``; ``eps`` ``(B, z_dim)`` is the noise."""
        if eps is None:
            eps = x.new_empty(x.shape[0], self.z_dim).normal_()
        return self._bound(x, self.enc_in.a(x), y, eps)

    def labelled_bound_all(self, x: Tensor, eps: Tensor | None = None) -> Tensor:
        """L(x, k) for every class k, ``(B, K)``; ``eps`` ``(B, K, z_dim)``, one draw per class."""
        b, k = x.shape[0], self.n_classes
        if eps is None:
            eps = x.new_empty(b, k, self.z_dim).normal_()
        ys = torch.arange(k, device=x.device).expand(b, k)
        hx = self.enc_in.a(x).unsqueeze(1)  # (B, 1, H): computed once for the K classes
        return self._bound(x.unsqueeze(1).expand(b, k, x.shape[1]), hx, ys, eps)

    def unlabelled_bound(self, x: Tensor, eps: Tensor | None = None) -> Tensor:
        """U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)) of each object, ``(B,)``."""
        log_q = F.log_softmax(self.classify(x), dim=-1)
        return (log_q.exp() * (self.labelled_bound_all(x, eps) - log_q)).sum(-1)

    def objective(
        self,
        x_lab: Tensor,
        y_lab: Tensor,
        x_unl: Tensor,
        n_lab: int,
        n_unl: int,
        alpha: float,
        eps_lab: Tensor | None = None,
        eps_unl: Tensor | None = None,
    ) -> M2Terms:
        """Unbiased minibatch estimate of -J^alpha / N (N = n_lab + n_unl objects in all).

        Each labelled row stands for n_lab / B_l labelled objects, each unlabelled row for
        n_unl / B_u unlabelled ones; the classification term is alpha times the labelled mean.
        ``eps_lab`` ``(B_l, z_dim)`` and ``eps_unl`` ``(B_u, K, z_dim)`` are the
        reparametrisation noise (drawn from the global generator when None).
        """
        n = n_lab + n_unl
        logits = self.classify(x_lab)
        clf = F.cross_entropy(logits, y_lab)
        bound = (
            self.labelled_bound(x_lab, y_lab, eps_lab).mean() * n_lab
            + self.unlabelled_bound(x_unl, eps_unl).mean() * n_unl
        ) / n
        loss = -bound + alpha * clf / n
        correct = (logits.argmax(-1) == y_lab).sum()
        return M2Terms(loss=loss, bound=bound.detach(), clf=clf.detach(), correct=correct)
