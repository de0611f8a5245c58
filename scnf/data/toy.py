"""Two-moons and concentric-circles data for the toy experiments (paper Table 1).

The paper gives neither a noise level nor a test-set size, so this module fixes them:

* ``NUM_TRAIN = 1000`` training objects (paper, Sec. 4), of which the label split
  (``scnf.data.splits``) marks 5 per class as labelled.
* ``NUM_TEST = 10_000`` test points, drawn from the same generator with a different seed.
  The authors' public ``datautils.py`` kept 500 points for testing, where one error moves
  the error rate by 0.2 %; 10,000 points make the toy error rates meaningful to 0.01 %.
* Gaussian noise of standard deviation ``NOISE = 0.1`` on both coordinates, and an
  inner-circle radius ``CIRCLES_FACTOR = 0.2``, as in the authors' ``datautils.py``
  (``make_moons(noise=0.1)``, ``make_circles(noise=0.1, factor=0.2)``).
* Fixed data seeds: ``DATA_SEED = 1234`` for the training set, ``TEST_SEED = 5678`` for
  the test set, so every run sees the same data unless a seed is passed explicitly.
* A validation set (``split="val"``): ``NUM_VAL = 10_000`` points drawn with
  ``VAL_SEED = 9012``, independent of both. Training monitors and every choice of
  hyper-parameters use it; the test set is scored once per run, at the end.

The generators are written here (no scikit-learn). They follow scikit-learn's geometry
and label convention (moons: upper arc = class 0; circles: outer circle = class 0) but
draw the angles i.i.d. uniformly instead of on an even grid, so that the training and
test sets are independent samples of one distribution. Classes are exactly balanced
and the rows are shuffled.
"""

from __future__ import annotations

import numpy as np
import torch

TOY_DATASETS: tuple[str, ...] = ("moons", "circles")
NUM_TRAIN: int = 1000
NUM_TEST: int = 10_000
NOISE: float = 0.1
CIRCLES_FACTOR: float = 0.2
DATA_SEED: int = 1234
TEST_SEED: int = 5678
NUM_VAL: int = 10_000
VAL_SEED: int = 9012

_SPLITS: dict[str, tuple[int, int]] = {
    "train": (NUM_TRAIN, DATA_SEED),
    "test": (NUM_TEST, TEST_SEED),
    "val": (NUM_VAL, VAL_SEED),
}


def _moons(rng: np.random.Generator, n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free moons: class 0 on the upper unit arc, class 1 on the shifted lower arc."""
    t0 = rng.uniform(0.0, np.pi, n_per_class)
    t1 = rng.uniform(0.0, np.pi, n_per_class)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    x = np.concatenate([upper, lower])
    y = np.repeat(np.arange(2), n_per_class)
    return x, y


def _circles(rng: np.random.Generator, n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free circles: class 0 on the unit circle, class 1 on radius ``CIRCLES_FACTOR``."""
    t = rng.uniform(0.0, 2.0 * np.pi, 2 * n_per_class)
    radius = np.repeat(np.array([1.0, CIRCLES_FACTOR]), n_per_class)
    x = radius[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
    y = np.repeat(np.arange(2), n_per_class)
    return x, y


_GENERATORS = {"moons": _moons, "circles": _circles}


def make_toy(
    name: str,
    split: str = "train",
    n: int | None = None,
    noise: float = NOISE,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a balanced, shuffled 2-D toy data set.

    Args:
        name: one of ``TOY_DATASETS`` ("moons", "circles").
        split: "train" (default size ``NUM_TRAIN``, seed ``DATA_SEED``), "test"
            (``NUM_TEST``, ``TEST_SEED``) or "val" (``NUM_VAL``, ``VAL_SEED``); it only
            chooses the defaults of ``n`` and ``seed``.
        n: number of points; must be even so that each class gets exactly ``n // 2``.
        noise: standard deviation of the isotropic Gaussian noise added to every point.
        seed: seed of the numpy ``Generator``; the same seed gives the same data.

    Returns:
        ``x`` float32 of shape (n, 2) and ``y`` int64 of shape (n,) with values in {0, 1}.

    Raises:
        ValueError: for an unknown name or split, an odd or non-positive ``n``, or negative noise.
    """
    if name not in _GENERATORS:
        raise ValueError(f"unknown toy data set {name!r}; expected one of {TOY_DATASETS}")
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLITS)}")
    default_n, default_seed = _SPLITS[split]
    n = default_n if n is None else int(n)
    seed = default_seed if seed is None else int(seed)
    if n <= 0 or n % 2:
        raise ValueError(f"n must be a positive even number (two balanced classes), got {n}")
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")

    rng = np.random.default_rng(seed)
    x, y = _GENERATORS[name](rng, n // 2)
    x = x + noise * rng.standard_normal(x.shape)
    order = rng.permutation(n)
    return (
        torch.from_numpy(x[order].astype(np.float32)),
        torch.from_numpy(y[order].astype(np.int64)),
    )
