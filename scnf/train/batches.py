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

The held-out set watched by the training monitors is data the model may see: for MNIST a
fixed subset of the *unlabelled* training pool with its true labels (the transductive error
of semi-supervised papers), for the toy sets the validation set (``make_toy(name, "val")``).
The test set is loaded only for the final evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from scnf.data import dequantize, load_mnist, load_split, make_toy
from scnf.train.config import RunConfig

HELDOUT_SEED = 31337  # which unlabelled MNIST images the monitors watch (same for every run)


@dataclass
class SemiSupervisedData:
    """Labelled, unlabelled, held-out and (optionally) test objects, raw values, one device.

    ``y_heldout`` holds true labels of objects that training sees unlabelled (MNIST); only
    the monitors read it. ``x_test`` / ``y_test`` are None unless the test set was asked for.
    """

    x_lab: Tensor
    y_lab: Tensor
    x_unl: Tensor
    x_test: Tensor | None
    y_test: Tensor | None
    image: bool  # MNIST: raw uint8 pixels that need dequantising
    x_heldout: Tensor | None = None
    y_heldout: Tensor | None = None
    heldout_name: str = ""  # the held-out set in words (train_metrics.json: monitor_set)
    heldout_index: Tensor | None = None  # MNIST: training-set indices of the held-out images

    @property
    def num_train(self) -> int:
        return self.x_lab.shape[0] + self.x_unl.shape[0]

    def model_input(self, raw: Tensor, generator: torch.Generator | None) -> Tensor:
        """Raw values -> the model's input space ([0, 1] dequantised pixels, or 2-D points)."""
        return dequantize(raw, generator) if self.image else raw


def _split_masks(split: dict, num_train: int | None) -> tuple[Tensor, Tensor]:
    """(labelled indices, unlabelled mask) of the training set for a split and subset size."""
    labelled = torch.as_tensor(split["labelled"], dtype=torch.long)
    is_unl = torch.ones(split["num_train"], dtype=torch.bool)
    is_unl[labelled] = False
    if num_train is not None:
        is_unl[num_train:] = False
    return labelled, is_unl


def planned_num_train(cfg: RunConfig) -> int:
    """Training objects (labelled + unlabelled) of ``cfg``, from the split file alone."""
    labelled, is_unl = _split_masks(load_split(cfg.split), cfg.data.num_train)
    return labelled.numel() + int(is_unl.sum())


def heldout_index(n_unl: int, size: int) -> Tensor:
    """Sorted positions in an unlabelled pool of ``n_unl`` objects that the MNIST monitors score.

    A fixed draw (``HELDOUT_SEED``), shared by the SCNF runs and the baselines: their labels are
    hidden from training, so the error on them is a non-test convergence curve (transductive).
    """
    gen = torch.Generator().manual_seed(HELDOUT_SEED)
    return torch.randperm(n_unl, generator=gen)[: min(size, n_unl)].sort().values


def load_data(cfg: RunConfig, device: torch.device, test: bool = True) -> SemiSupervisedData:
    """Read the data set and the label split named in ``cfg``; put everything on ``device``.

    ``test=False`` leaves the test set unread (training never looks at it).
    """
    split = load_split(cfg.split)
    if split["dataset"] != cfg.dataset:
        raise ValueError(f"split {cfg.split} is for {split['dataset']!r}, not {cfg.dataset!r}")
    x_test = y_test = None
    if cfg.dataset == "mnist":
        x_train, y_train = load_mnist(cfg.data.dir, train=True, download=cfg.data.download)
        if test:
            x_test, y_test = load_mnist(cfg.data.dir, train=False, download=cfg.data.download)
    else:
        x_train, y_train = make_toy(cfg.dataset, "train")
        if test:
            x_test, y_test = make_toy(cfg.dataset, "test")
    if split["num_train"] != x_train.shape[0]:
        raise ValueError(
            f"split {cfg.split} was made for {split['num_train']} training objects, "
            f"the data has {x_train.shape[0]}"
        )
    labelled, is_unl = _split_masks(split, cfg.data.num_train)
    if test and cfg.data.num_test is not None:
        x_test, y_test = x_test[: cfg.data.num_test], y_test[: cfg.data.num_test]
    size = cfg.train.monitor_size
    held_index = None
    if cfg.dataset == "mnist":
        pool = is_unl.nonzero()[:, 0]
        n = pool.numel()
        held_index = pool[heldout_index(n, size)]
        x_held, y_held = x_train[held_index], y_train[held_index]
        name = (
            f"{held_index.numel()} of the {n} unlabelled training images, scored against their "
            "true labels (transductive)"
        )
    else:
        x_held, y_held = make_toy(cfg.dataset, "val")
        x_held, y_held = x_held[:size], y_held[:size]
        name = f"{x_held.shape[0]} points of the {cfg.dataset} validation set (make_toy 'val')"
    return SemiSupervisedData(
        x_lab=x_train[labelled].to(device),
        y_lab=y_train[labelled].to(device),
        x_unl=x_train[is_unl].to(device),
        x_heldout=x_held.to(device),
        y_heldout=y_held.to(device),
        heldout_name=name,
        heldout_index=held_index,
        image=cfg.dataset == "mnist",
        x_test=None if x_test is None else x_test.to(device),
        y_test=None if y_test is None else y_test.to(device),
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
        x, y, _ = self.sample_with_indices()
        return x, y

    def sample_with_indices(self) -> tuple[Tensor, Tensor, Tensor]:
        """(x, y_lab, iu): as ``sample``, plus the indices into ``x_unl`` of the unlabelled rows.

        The same generator calls in the same order as ``sample``: both draw the same batches.
        """
        d, g = self.data, self.generator
        dev = d.x_lab.device
        il = torch.randint(d.x_lab.shape[0], (self.n_lab,), generator=g, device=dev)
        iu = torch.randint(
            d.x_unl.shape[0], (self.batch_size - self.n_lab,), generator=g, device=dev
        )
        raw = torch.cat([d.x_lab[il], d.x_unl[iu]])
        return d.model_input(raw, g), d.y_lab[il], iu
