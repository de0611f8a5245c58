"""The run configuration: one training job, read from YAML and validated strictly.

Every key has a default that follows the authors' MNIST configuration
(``../shared/reference/original-code.md``: Adamax, lr 1e-3, weight decay 1e-5,
linear decay over 500 epochs, batch 256, one third labelled). Unknown keys and
wrong types are refused with a message naming the key, before any data is
loaded or any model is built.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from scnf.presets import PRESETS, preset_options


class ConfigError(ValueError):
    """A run configuration is invalid; the message names the offending key."""


@dataclass
class DataConfig:
    dir: str = "../shared/data"  # MNIST root holding MNIST/raw (ignored for the toy sets)
    download: bool = False  # download through torchvision when files are missing
    num_train: int | None = None  # use only the first N training images (labelled ones kept)
    num_test: int | None = None  # evaluate on the first N test images


@dataclass
class TrainConfig:
    mode: Literal["sgd", "em-sgd"] = "sgd"
    # EM-SGD: optimiser steps between E-steps over the unlabelled pool (null = once per epoch)
    estep_every: int | None = None
    # EM-SGD with the class-Gaussian head (presets *-gmm): how its M-step sets the Gaussians.
    # closed-form: the responsibility-weighted moments after each E-step, no gradient steps in
    # between; gradient: gradient steps on the expected complete-data objective, as f_w takes.
    gmm_m_step: Literal["closed-form", "gradient"] = "closed-form"
    clf_weight: float = 0.0  # weight of L_clf, the cross-entropy of p(y|x) on labelled objects
    batch_size: int = 256
    labelled_fraction: float = 1 / 3  # share of labelled objects in each batch
    epochs: int = 500  # one epoch = len(training set) draws
    max_steps: int | None = None  # optional cap on optimiser steps
    optimizer: Literal["adamax", "adam", "adamw"] = "adamax"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1e-5
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    warmup_steps: int = 0
    grad_clip: float | None = None
    checkpoint_every: int = 500  # optimiser steps
    # Monitors in train_log.jsonl, never on the test set: error on the labelled objects and
    # error / NLL / bits-per-dim on a held-out set (MNIST: a fixed subset of the unlabelled
    # pool against its true labels; toys: the validation set). Epochs between monitors
    # (0 = only at the end; the final step is always monitored).
    monitor_every: int = 1
    # Optimiser steps between extra monitors inside epochs (0 = none): a run of a few long
    # epochs still gets a curve. Entries without train_* keys mark these in train_log.jsonl.
    monitor_every_steps: int = 0
    monitor_size: int = 10_000  # held-out objects monitored (capped at the pool / val set)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"  # bf16: autocast of the conditioner nets
    compile: bool = False  # torch.compile the training objective (forward + backward graph)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = "default"
    progress: bool = True  # show a progress bar


# Train keys that change nothing in a run's result (display, bookkeeping, device, compilation):
# left out of the protocol a run records, so that toggling them never splits a table row. One
# list for the SCNF runs (scnf.evaluate.run_protocol) and the baselines (scnf.baselines.train).
NOT_PROTOCOL_KEYS = frozenset(
    {"progress", "device", "checkpoint_every", "monitor_every", "monitor_every_steps",
     "monitor_size", "compile", "compile_mode"}
)  # fmt: skip
# Train keys added after runs had been recorded, with the value those runs were trained with
# (the key's default): at that value a key is left out of a run's protocol, and a record
# without it reads as that value, so that runs recorded before and after the key existed
# compare equal and no committed run looks changed.
ADDED_TRAIN_KEYS: dict[str, Any] = {"gmm_m_step": "closed-form"}
# Data keys that say where the data come from, not which data: the subset sizes are protocol.
DATA_LOCATION_KEYS = frozenset({"dir", "download"})


def protocol_view(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict (SCNF or baseline run) without the keys that leave the result unchanged.

    Drops the display ``name``, ``DATA_LOCATION_KEYS`` and ``NOT_PROTOCOL_KEYS``: an existing
    run whose protocol view is unchanged is resumed, never retrained (``scnf.train.loop``).
    """
    out = {k: v for k, v in config.items() if k != "name"}
    for section, dropped in (("data", DATA_LOCATION_KEYS), ("train", NOT_PROTOCOL_KEYS)):
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k not in dropped}
    return out


@dataclass
class EvalConfig:
    batch_size: int = 512


@dataclass
class RunConfig:
    dataset: Literal["moons", "circles", "mnist"]
    preset: str
    split: str  # label split file written by `scnf splits`
    seed: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    name: str | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"preset: unknown {self.preset!r}; choose one of {sorted(PRESETS)}")
        family = PRESETS[self.preset][0]
        if (family == "mnist") != (self.dataset == "mnist"):
            raise ConfigError(f"preset {self.preset!r} does not fit dataset {self.dataset!r}")
        unknown = sorted(set(self.model) - set(preset_options(self.preset)))
        if unknown:
            raise ConfigError(
                f"model: unknown key(s) {unknown} for preset {self.preset!r}; "
                f"allowed: {sorted(preset_options(self.preset))}"
            )
        t = self.train
        if not 0.0 < t.labelled_fraction < 1.0:
            raise ConfigError("train.labelled_fraction must be in (0, 1)")
        for key in ("batch_size", "epochs", "checkpoint_every", "monitor_size"):
            if getattr(t, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1")
        if t.monitor_every < 0:
            raise ConfigError("train.monitor_every must be >= 0 (0 = only at the end)")
        if t.monitor_every_steps < 0:
            raise ConfigError("train.monitor_every_steps must be >= 0 (0 = none)")
        if t.estep_every is not None and t.estep_every < 1:
            raise ConfigError("train.estep_every must be >= 1 or null (once per epoch)")
        if t.lr <= 0:
            raise ConfigError("train.lr must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# A plain decimal number, e.g. 1e-3, -2.5E+4, .5: strings a float-typed key accepts.
_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _check(value: Any, tp: Any, key: str) -> Any:
    """Validate ``value`` against type ``tp``; an int or a decimal string becomes a float."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _from_dict(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _check(value, opt, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {value!r} is not of type {tp}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_check(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads `1e-3` (no dot) as a string
    if tp is Any:
        return value
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def _from_dict(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {[prefix + k for k in unknown]}; allowed: {sorted(names)}"
        )
    kwargs = {k: _check(v, hints[k], prefix + k) for k, v in raw.items()}
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing required key(s) {[prefix + k for k in missing]}")
    return cls(**kwargs)


def run_config_from_dict(raw: dict[str, Any]) -> RunConfig:
    if not isinstance(raw, dict):
        raise ConfigError("a run config must be a mapping")
    return _from_dict(RunConfig, raw)


def load_run_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"run config {path} does not exist")
    with open(path) as fh:
        raw = yaml.safe_load(fh)
    try:
        return run_config_from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
