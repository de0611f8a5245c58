"""The semi-supervised objective of the paper, eq. (1), its EM-SGD variant, and L_clf.

For a batch whose first ``n_lab`` rows are labelled (x, y) and the rest unlabelled x:

    L = (1/B) [ sum_lab log p(x, y) + sum_unl T(x) ]

* ``sgd``:    T(x) = log p(x) = logsumexp_k log p(x, k).
* ``em-sgd``: T(x_j) = sum_k r[j, k] log p(x_j, k), the expected complete-data
  log-likelihood with the responsibilities r[j, k] = p(k | x_j) that the last E-step stored
  for object j (``scnf.train.em``); no gradient flows through r. Right after an E-step r is
  the current posterior and, by Fisher's identity, the gradient equals ``sgd``'s; as the
  parameters move between E-steps the two part.
* ``clf_weight`` > 0 adds L_clf = mean cross-entropy of p(y|x) on the labelled rows.

The loss minimised is -L + clf_weight * L_clf, in nats per object. The reported ``nll`` is
always eq. (1)'s -L with T = log p(x) (also under ``em-sgd``), so logs of both modes compare.
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
    log_joint: Tensor,
    y_lab: Tensor,
    mode: str = "sgd",
    clf_weight: float = 0.0,
    resp: Tensor | None = None,
) -> StepTerms:
    """The loss from log p(x, k) of a batch, shape (B, K); rows [0, len(y_lab)) are labelled.

    ``resp`` (``em-sgd`` only): the stored responsibilities of the unlabelled rows, (B - n_lab, K).
    """
    n_lab = y_lab.shape[0]
    lab, unl = log_joint[:n_lab], log_joint[n_lab:]
    lab_term = lab.gather(1, y_lab[:, None]).squeeze(1).sum()
    if mode == "sgd":
        unl_term = torch.logsumexp(unl, dim=1).sum()
        nll = -(lab_term + unl_term) / log_joint.shape[0]
        loss = nll
        nll = nll.detach()
    elif mode == "em-sgd":
        if resp is None or resp.shape != unl.shape:
            raise ValueError(
                "em-sgd needs the stored responsibilities of the unlabelled rows, shape "
                f"{tuple(unl.shape)}; got {None if resp is None else tuple(resp.shape)}"
            )
        expected = (resp.detach().to(unl.dtype) * unl).sum()
        loss = -(lab_term + expected) / log_joint.shape[0]
        with torch.no_grad():
            nll = -(lab_term + torch.logsumexp(unl, dim=1).sum()) / log_joint.shape[0]
    else:
        raise ValueError(f"unknown training mode {mode!r}; use 'sgd' or 'em-sgd'")
    if n_lab:
        clf = F.cross_entropy(lab, y_lab)  # log_softmax(log p(x, .)) = log p(. | x)
        correct = (lab.argmax(1) == y_lab).sum()
    else:
        clf = nll.new_zeros(())
        correct = torch.zeros((), dtype=torch.long, device=nll.device)
    loss = loss + clf_weight * clf if clf_weight else loss
    return StepTerms(loss, nll, clf.detach(), correct, n_lab)


def semi_supervised_objective(
    model: SCNF,
    x: Tensor,
    y_lab: Tensor,
    mode: str = "sgd",
    clf_weight: float = 0.0,
    resp: Tensor | None = None,
) -> StepTerms:
    """One pass of f_w over the whole batch, then one batched pass of h_phi over K classes."""
    return objective_from_joints(model.log_joint_all(x), y_lab, mode, clf_weight, resp)
