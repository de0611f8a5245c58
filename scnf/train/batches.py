"""Training data held on the device, and the semi-supervised batch sampler.

The whole training set lives on the training device as raw values (uint8
pixels for MNIST: 47 MB), so a batch is two index draws and a gather: no
DataLoader, no host-device copies inside a step. MNIST pixels are dequantised
per batch, (k + u) / 256, with fresh noise from the sampler's generator.

Batches mirror the authors' sampler (original-code.md, 1.4): labelled objects
are drawn uniformly with replacement from the labelled set and unlabelled ones
uniformly with replacement from the rest; unlike theirs, the labelled count per
batch is fixed at round(labelled_fraction * batch_size) instead of Binomial,
so every step has the same shapes (good for compiled / graph-captured steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from scnf.data import dequantize, load_mnist, load_split, make_toy
from scnf.train.config import RunConfig


@dataclass
class SemiSupervisedData:
    """Labelled, unlabelled and test objects (raw values) on one device."""

    x_lab: Tensor
    y_lab: Tensor
    x_unl: Tensor
    x_test: Tensor
    y_test: Tensor
    image: bool  # MNIST: raw uint8 pixels that need dequantising

    @property
    def num_train(self) -> int:
        return self.x_lab.shape[0] + self.x_unl.shape[0]

    def model_input(self, raw: Tensor, generator: torch.Generator | None) -> Tensor:
        """Raw values -> the model's input space ([0, 1] dequantised pixels, or 2-D points)."""
        return dequantize(raw, generator) if self.image else raw


def load_data(cfg: RunConfig, device: torch.device) -> SemiSupervisedData:
    """Read the data set and the label split named in ``cfg``; put everything on ``device``."""
    split = load_split(cfg.split)
    if split["dataset"] != cfg.dataset:
        raise ValueError(f"split {cfg.split} is for {split['dataset']!r}, not {cfg.dataset!r}")
    if cfg.dataset == "mnist":
        x_train, y_train = load_mnist(cfg.data.dir, train=True, download=cfg.data.download)
        x_test, y_test = load_mnist(cfg.data.dir, train=False, download=cfg.data.download)
    else:
        x_train, y_train = make_toy(cfg.dataset, "train")
        x_test, y_test = make_toy(cfg.dataset, "test")
    if split["num_train"] != x_train.shape[0]:
        raise ValueError(
            f"split {cfg.split} was made for {split['num_train']} training objects, "
            f"the data has {x_train.shape[0]}"
        )
    labelled = torch.as_tensor(split["labelled"], dtype=torch.long)
    is_unl = torch.ones(x_train.shape[0], dtype=torch.bool)
    is_unl[labelled] = False
    if cfg.data.num_train is not None:
        is_unl[cfg.data.num_train :] = False
    if cfg.data.num_test is not None:
        x_test, y_test = x_test[: cfg.data.num_test], y_test[: cfg.data.num_test]
    return SemiSupervisedData(
        x_lab=x_train[labelled].to(device),
        y_lab=y_train[labelled].to(device),
        x_unl=x_train[is_unl].to(device),
        x_test=x_test.to(device),
        y_test=y_test.to(device),
        image=cfg.dataset == "mnist",
    )


def labelled_count(batch_size: int, labelled_fraction: float) -> int:
    """Labelled rows per batch: the fraction rounded, at least one and one unlabelled row."""
    return min(batch_size - 1, max(1, round(labelled_fraction * batch_size)))


class BatchSampler:
    """Draws batches [labelled rows | unlabelled rows] with replacement, on the data's device."""

    def __init__(
        self, data: SemiSupervisedData, batch_size: int, labelled_fraction: float, seed: int
    ):
        self.data = data
        self.batch_size = batch_size
        self.n_lab = labelled_count(batch_size, labelled_fraction)
        self.generator = torch.Generator(device=data.x_lab.device)
        self.generator.manual_seed(seed)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.data.num_train / self.batch_size)

    def sample(self) -> tuple[Tensor, Tensor]:
        """(x, y_lab): x has ``batch_size`` rows, the first ``n_lab`` labelled with ``y_lab``."""
        d, g = self.data, self.generator
        dev = d.x_lab.device
        il = torch.randint(d.x_lab.shape[0], (self.n_lab,), generator=g, device=dev)
        iu = torch.randint(
            d.x_unl.shape[0], (self.batch_size - self.n_lab,), generator=g, device=dev
        )
        raw = torch.cat([d.x_lab[il], d.x_unl[iu]])
        return d.model_input(raw, g), d.y_lab[il]
