"""Run configs of the baselines (``scnf baseline-m1`` / ``scnf baseline-m2``), read strictly.

Defaults are Kingma et al.'s (2014) settings where they are known (paper Sec. 4 and the
authors' code, github.com/dpkingma/nips14-ssl): Adam with step size 3e-4 and moment decay
rates 0.1 / 0.001 (betas 0.9 / 0.999 in today's notation), softplus MLPs, a 50-d latent,
alpha = 0.1 N, 1 labelled + 599 unlabelled objects per step for 100 labels (their 100
minibatches per epoch), and a N(0, 1) prior on the weights of M2 (the authors' ``prior_sd``),
which on an objective divided by N is an L2 term of weight 1/N: ``weight_decay`` ~ 1.7e-5.
The number of epochs is ours (they ran up to 3,000): see config/config.yaml. Unknown keys and
wrong types are refused, naming the key, before any data is read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from scnf.train.config import ConfigError, _from_dict

DISPLAY_ONLY = ("progress",)  # train keys that do not change the result


@dataclass
class BaselineData:
    dir: str = "../shared/data"  # MNIST root holding MNIST/raw
    download: bool = False  # fetch MNIST through torchvision when files are missing
    num_train: int | None = None  # first N training images (the labelled ones are kept)
    num_test: int | None = None  # first N test images


@dataclass
class M1Train:
    hidden: list[int] = field(default_factory=lambda: [600, 600])  # encoder; decoder mirrors
    latent: int = 50
    epochs: int = 100  # one epoch = as many draws as training images
    max_steps: int | None = None  # optional cap on optimiser steps
    batch_size: int = 100
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1.7e-5  # L2 gradient term (Adam's weight_decay)
    checkpoint_every: int = 1000  # optimiser steps
    progress: bool = True


@dataclass
class M2Train:
    hidden: int = 500  # one hidden layer in q(y|x), q(z|x,y) and p(x|y,z)
    latent: int = 50
    alpha_per_n: float = 0.1  # alpha = alpha_per_n * N (N = all training objects)
    epochs: int = 100  # one epoch = as many unlabelled draws as unlabelled objects
    max_steps: int | None = None
    labelled_batch: int = 1  # labelled rows per step (drawn with replacement)
    unlabelled_batch: int = 599  # unlabelled rows per step (drawn with replacement)
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1.7e-5
    checkpoint_every: int = 1000
    progress: bool = True


@dataclass
class M1M2Train(M2Train):
    hidden: int = 500
    # M2's training input: a fresh sample of q(z1 | x) in every step (the authors' code), or
    # its mean. The test set is always classified from the means.
    features: Literal["sample", "mean"] = "sample"
    # Keep only M1 latent dimensions whose posterior mean varies over the training images by
    # more than this standard deviation (the authors' code: 0.1); the rest are inactive.
    active_std: float = 0.1


@dataclass
class M1Config:
    seed: int = 0
    data: BaselineData = field(default_factory=BaselineData)
    train: M1Train = field(default_factory=M1Train)
    eval_batch_size: int = 1000
    name: str | None = None

    def __post_init__(self) -> None:
        t = self.train
        _positive(t, ("latent", "epochs", "batch_size", "checkpoint_every"))
        if not t.hidden or min(t.hidden) < 1:
            raise ConfigError("train.hidden must be a non-empty list of positive widths")
        _check_optim(t)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class M2Config:
    split: str  # label split file written by `scnf splits --dataset mnist`
    model: Literal["m2"] = "m2"
    seed: int = 0
    data: BaselineData = field(default_factory=BaselineData)
    train: M2Train = field(default_factory=M2Train)
    eval_batch_size: int = 1000
    name: str | None = None

    def __post_init__(self) -> None:
        t = self.train
        keys = ("hidden", "latent", "epochs", "labelled_batch", "unlabelled_batch")
        _positive(t, (*keys, "checkpoint_every"))
        if t.alpha_per_n < 0:
            raise ConfigError("train.alpha_per_n must be >= 0")
        _check_optim(t)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class M1M2Config(M2Config):
    m1_run: str = ""  # directory of a finished `scnf baseline-m1` run
    model: Literal["m1m2"] = "m1m2"
    train: M1M2Train = field(default_factory=M1M2Train)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.m1_run:
            raise ConfigError("m1_run: model m1m2 needs the directory of a finished M1 run")


def _positive(t: Any, keys: tuple[str, ...]) -> None:
    for key in keys:
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key} must be >= 1")


def _check_optim(t: Any) -> None:
    if t.lr <= 0:
        raise ConfigError("train.lr must be > 0")
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        raise ConfigError("train.betas must be two numbers in [0, 1)")
    if t.weight_decay < 0:
        raise ConfigError("train.weight_decay must be >= 0")


def _read(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"baseline config {path} does not exist")
    raw = yaml.safe_load(path.read_text())  # JSON is YAML: the workflow writes JSON
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a baseline config must be a mapping")
    return raw


def m1_config_from_dict(raw: dict[str, Any]) -> M1Config:
    return _from_dict(M1Config, raw)


def m2_config_from_dict(raw: dict[str, Any]) -> M2Config:
    """An ``M2Config`` (``model: m2``) or an ``M1M2Config`` (``model: m1m2``)."""
    classes = {"m2": M2Config, "m1m2": M1M2Config}
    model = raw.get("model", "m2")
    if model not in classes:
        raise ConfigError(f"model: {model!r} is not one of {sorted(classes)}")
    return _from_dict(classes[model], raw)


def load_m1_config(path: str | Path) -> M1Config:
    try:
        return m1_config_from_dict(_read(path))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def load_m2_config(path: str | Path) -> M2Config:
    try:
        return m2_config_from_dict(_read(path))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def what_is_trained(cfg: M1Config | M2Config) -> dict[str, Any]:
    """The config minus display-only keys: toggling the progress bar must not restart a run."""
    d = cfg.to_dict()
    d["train"] = {k: v for k, v in d["train"].items() if k not in DISPLAY_ONLY}
    return d
