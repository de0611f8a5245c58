"""EM-SGD: a periodic E-step over the unlabelled pool and an M-step for the GMM head.

The paper (Sec. 3, App. B) adapts expectation-maximisation to SCNF. As built here:

* **E-step**, every ``train.estep_every`` optimiser steps (default: once per epoch) and
  before the first step: responsibilities r[j, k] = p(k | x_j) for *every* unlabelled
  training object under the current parameters, in evaluation mode, without gradients and
  with one fixed dequantisation draw (``ESTEP_SEED``, the same at every E-step). They are
  kept on the training device, (N_unl, K), and in the checkpoint. Labelled objects keep
  their one-hot labels. With ``train.compile`` the E-step's forward pass is compiled too
  (``compiled_posterior``: one batch shape, the same numbers as eager to float rounding).
* **M-step for the class-Gaussian head** (``ClassGaussian``, presets ``*-gmm``), chosen by
  ``train.gmm_m_step``:

  - ``closed-form`` (default; the toy protocols): right after each E-step the means and
    diagonal variances of every class are set to the responsibility-weighted moments of z_f
    over the labelled (one-hot) and unlabelled objects, with a variance floor ``VAR_FLOOR``.
    These head parameters are then held out of the optimiser (no gradient steps, no weight
    decay) until the next M-step. The labelled objects weigh in by their count only: 100
    labels among 60,000 MNIST images are about 0.2 % of each Gaussian's moments.
  - ``gradient``: the Gaussians take the gradient steps described next, like every other
    parameter (the paper's restated EM-SGD: an M-step of gradient steps on
    sum_k q(k | x) log p(x, k)), so the labelled term and L_clf reach them.
* **Gradient M-steps** between E-steps: the optimiser ascends
  sum_lab log p(x, y) + sum_unl sum_k r[j, k] log p(x_j, k) with the *stored* r of each drawn
  object (``scnf.train.objective``). f_w has no closed-form maximiser, so it keeps its
  gradient steps under both heads (a generalised EM: each step raises the expected
  complete-data log-likelihood for the fixed r, which is all EM's monotonicity argument
  needs); under the class-Gaussian head it is fitted to Gaussians that stay fixed between
  M-steps. The conditional-Glow head likewise has no closed form and takes the same
  gradient steps.

The mixing weights are not re-estimated: p(y) stays the model's fixed prior (uniform, as in
the paper).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor
from torch.nn import functional as F

from scnf.conditional import ClassGaussian
from scnf.model import SCNF
from scnf.train.batches import SemiSupervisedData

ESTEP_SEED = 11  # dequantisation noise of the E-step's pass over the training set
VAR_FLOOR = 1e-3  # smallest per-dimension variance of a class Gaussian after an M-step


def has_closed_form_head(model: SCNF) -> bool:
    """True for the class-Gaussian head, whose M-step EM-SGD takes in closed form."""
    return isinstance(model.head, ClassGaussian)


def uses_closed_form_m_step(model: SCNF, gmm_m_step: str) -> bool:
    """True when EM-SGD sets this model's head in closed form (``train.gmm_m_step``, whose
    values the run config has already checked)."""
    return has_closed_form_head(model) and gmm_m_step == "closed-form"


def hold_out_closed_form_parameters(model: SCNF) -> list[str]:
    """Stop gradients to the parameters the closed-form M-step sets; return their names."""
    if not has_closed_form_head(model):
        return []
    names = []
    for name, p in model.head.named_parameters():
        p.requires_grad_(False)
        names.append(f"head.{name}")
    return names


Posterior = Callable[[Tensor], tuple[Tensor, Tensor]]


def posterior_and_latent(model: SCNF, x: Tensor) -> tuple[Tensor, Tensor]:
    """p(k | x) and z_f of a batch, (B, K) and (B, zf_dim).

    log p(x, k) = [class-independent part of f_w] + log p(z_f | k) + log p(k): the first term
    cancels in the posterior, so the head and the prior give p(k | x).
    """
    z_f, _ = model.encode(x)
    return torch.softmax(model.head.log_prob_all(z_f) + model.log_prior, dim=1), z_f


def compiled_posterior(model: SCNF, batch_size: int) -> Posterior:
    """``posterior_and_latent`` under ``torch.compile`` for batches of exactly ``batch_size``.

    A shorter (last) batch is padded with copies of its first row and the padding cut off
    again: in evaluation mode every row is computed on its own (ActNorm is a fixed affine map),
    so padding changes no result and one compiled graph serves every batch. The default mode
    (no CUDA graphs) keeps each batch's outputs alive, as the E-step stores them.
    """
    fn = torch.compile(partial(posterior_and_latent, model), dynamic=False)

    def forward(x: Tensor) -> tuple[Tensor, Tensor]:
        n = x.shape[0]
        if n < batch_size:
            x = torch.cat([x, x[:1].expand(batch_size - n, *x.shape[1:])])
        post, z_f = fn(x)
        return post[:n], z_f[:n]

    return forward


@torch.no_grad()
def e_step(
    model: SCNF,
    data: SemiSupervisedData,
    batch_size: int,
    m_step: bool | None = None,
    forward: Posterior | None = None,
) -> Tensor:
    """Responsibilities of every unlabelled object, (N_unl, K); then the closed-form M-step.

    Args:
        model: the SCNF (switched to eval mode and back).
        data: the training data; ``x_unl`` gets responsibilities, ``x_lab`` (one-hot)
            enters the M-step only.
        batch_size: objects per forward pass.
        m_step: set the class Gaussians in closed form afterwards; default: when the head is
            a ``ClassGaussian``.
        forward: computes (p(k | x), z_f) of a batch of unlabelled objects; default: eager
            ``posterior_and_latent`` (``compiled_posterior`` gives the same numbers, faster).

    Returns:
        r, in the dtype of the model's log-densities, on the data's device; the E-step uses
        the head's parameters *before* the M-step (E, then M).
    """
    if m_step is None:
        m_step = has_closed_form_head(model)
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=data.x_unl.device)
    gen.manual_seed(ESTEP_SEED)
    head, k = model.head, model.num_classes
    stats = None

    def accumulate(z_f: Tensor, w: Tensor) -> None:
        nonlocal stats
        m = ClassGaussian.moments(z_f, w)
        stats = m if stats is None else tuple(a + b for a, b in zip(stats, m))

    if forward is None:
        forward = partial(posterior_and_latent, model)
    resp = []
    for start in range(0, data.x_unl.shape[0], batch_size):
        x = data.model_input(data.x_unl[start : start + batch_size], gen)
        r, z_f = forward(x)
        resp.append(r)
        if m_step:
            accumulate(z_f, r)
    if m_step:
        for start in range(0, data.x_lab.shape[0], batch_size):
            x = data.model_input(data.x_lab[start : start + batch_size], gen)
            z_f, _ = model.encode(x)
            accumulate(z_f, F.one_hot(data.y_lab[start : start + batch_size], k).to(z_f.dtype))
        head.set_from_moments_(*stats, var_floor=VAR_FLOOR)
    model.train(was_training)
    return torch.cat(resp)
