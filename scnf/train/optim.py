"""Optimiser and learning-rate schedule from the run config (per optimiser step)."""

from __future__ import annotations

import math

import torch

from scnf.train.config import TrainConfig

OPTIMIZERS = {"adamax": torch.optim.Adamax, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def make_optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """All trainable parameters, as the authors did (weight decay on everything).

    Parameters with ``requires_grad`` off are left out: EM-SGD sets the class Gaussians of
    the GMM head in closed form (``scnf.train.em``), so no step or weight decay touches them.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return OPTIMIZERS[t.optimizer](
        params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay
    )


def lr_factor(step: int, total: int, schedule: str, warmup: int) -> float:
    """Multiplier of the base lr before optimiser step ``step`` (0-based).

    Linear warm-up over ``warmup`` steps, then ``linear`` decay to 0 at the end
    (the authors' schedule, applied per step instead of per epoch), ``cosine``
    decay to 0, or ``constant``.
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0


def make_scheduler(
    optimizer: torch.optim.Optimizer, t: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, t.schedule, t.warmup_steps)
    )
