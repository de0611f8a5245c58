"""The semi-supervised objective of the paper, eq. (1), its EM-SGD variant, and L_clf.

For a batch whose first ``n_lab`` rows are labelled (x, y) and the rest unlabelled x:

    L = (1/B) [ sum_lab log p(x, y) + sum_unl T(x) ]

* ``sgd``:    T(x) = log p(x) = logsumexp_k log p(x, k).
* ``em-sgd``: T(x) = sum_k q(k|x) log p(x, k) with q = p(y|x) under the current
  parameters and no gradient through q (the E-step). By Fisher's identity this
  has the same gradient as ``sgd`` when q is refreshed every batch (as here);
  the objective's value differs by the entropy of q.
* ``clf_weight`` > 0 adds L_clf = mean cross-entropy of p(y|x) on the labelled rows.

The loss minimised is -L + clf_weight * L_clf, in nats per object.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from scnf.model import SCNF


@dataclass
class StepTerms:
    """Everything a training step reports, as device tensors (no host sync)."""

    loss: Tensor  # scalar to minimise
    nll: Tensor  # -L, nats per object
    clf: Tensor  # L_clf (computed even when its weight is 0, for logging)
    correct: Tensor  # number of labelled rows classified correctly
    n_lab: int


def objective_from_joints(
    log_joint: Tensor, y_lab: Tensor, mode: str = "sgd", clf_weight: float = 0.0
) -> StepTerms:
    """The loss from log p(x, k) of a batch, shape (B, K); rows [0, len(y_lab)) are labelled."""
    n_lab = y_lab.shape[0]
    lab, unl = log_joint[:n_lab], log_joint[n_lab:]
    lab_term = lab.gather(1, y_lab[:, None]).squeeze(1)
    if mode == "sgd":
        unl_term = torch.logsumexp(unl, dim=1)
    elif mode == "em-sgd":
        q = torch.softmax(unl, dim=1).detach()  # E-step: fixed responsibilities
        unl_term = (q * unl).sum(dim=1)
    else:
        raise ValueError(f"unknown training mode {mode!r}; use 'sgd' or 'em-sgd'")
    nll = -(lab_term.sum() + unl_term.sum()) / log_joint.shape[0]
    if n_lab:
        clf = F.cross_entropy(lab, y_lab)  # log_softmax(log p(x, .)) = log p(. | x)
        correct = (lab.argmax(1) == y_lab).sum()
    else:
        clf = nll.new_zeros(())
        correct = torch.zeros((), dtype=torch.long, device=nll.device)
    loss = nll + clf_weight * clf if clf_weight else nll
    return StepTerms(loss, nll.detach(), clf.detach(), correct, n_lab)


def semi_supervised_objective(
    model: SCNF, x: Tensor, y_lab: Tensor, mode: str = "sgd", clf_weight: float = 0.0
) -> StepTerms:
    """One pass of f_w over the whole batch, then one batched pass of h_phi over K classes."""
    return objective_from_joints(model.log_joint_all(x), y_lab, mode, clf_weight)
