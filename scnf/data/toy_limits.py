"""The best any model can do on the toy problems: entropy and Bayes error of the generators.

The toy data (``scnf.data.toy``) are a known distribution: the class y is uniform on {0, 1},
an angle t is uniform on the class's arc, and x = c_y(t) + noise * N(0, I) with c_y the
noise-free curve (moons: the upper unit arc and the shifted lower arc; circles: radius 1 and
``CIRCLES_FACTOR``). Hence

    p(x | y) = E_t[ N(x; c_y(t), noise^2 I) ],    p(x) = sum_y p(y) p(x | y),

an angle integral computed here by the midpoint rule over ``n_angles`` angles, in log space
(``logsumexp``). From it, by Monte Carlo over samples of the true distribution:

* the differential entropy H = -E log p(x) (nats): the lowest achievable expected test NLL,
  since E[-log q(x)] = H + KL(p || q) >= H for every model density q;
* the Bayes error E[1 - max_y p(y | x)] (%): the lowest achievable expected test error.
  Averaging the posterior's risk instead of counting the Bayes classifier's mistakes gives the
  same expectation with a much smaller variance.

Both come with the Monte Carlo standard error (std of the per-sample terms / sqrt(n)).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import logsumexp

from scnf.data.toy import CIRCLES_FACTOR, NOISE, TOY_DATASETS, make_toy

LIMITS_SEED: int = 2019  # Monte Carlo samples, independent of the train / test / val seeds
_CHUNK = 4096


def class_curves(name: str, n_angles: int = 2048) -> list[np.ndarray]:
    """Noise-free points c_y(t) of each class at the midpoints of ``n_angles`` equal angle cells.

    Returns:
        one float64 array of shape (n_angles, 2) per class, in the label order of ``make_toy``.
    """
    if name == "moons":
        t = (np.arange(n_angles) + 0.5) * (np.pi / n_angles)
        upper = np.stack([np.cos(t), np.sin(t)], axis=1)
        lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
        return [upper, lower]
    if name == "circles":
        t = (np.arange(n_angles) + 0.5) * (2.0 * np.pi / n_angles)
        unit = np.stack([np.cos(t), np.sin(t)], axis=1)
        return [unit, CIRCLES_FACTOR * unit]
    raise ValueError(f"unknown toy data set {name!r}; expected one of {TOY_DATASETS}")


def log_class_densities(x: np.ndarray, curves: list[np.ndarray], noise: float) -> np.ndarray:
    """log p(x | y) for every row of ``x`` (N, 2) and class: shape (N, K), float64.

    Each class density is the average of isotropic Gaussians N(x; c, noise^2 I) over the points
    c of its curve (equal weights: the angle is uniform).
    """
    if noise <= 0:
        raise ValueError(f"noise must be positive for a density, got {noise}")
    x = np.asarray(x, dtype=np.float64)
    log_norm = -math.log(2.0 * math.pi * noise**2)
    out = np.empty((x.shape[0], len(curves)))
    for start in range(0, x.shape[0], _CHUNK):
        xc = x[start : start + _CHUNK]
        for k, c in enumerate(curves):
            sq = ((xc[:, None, :] - c[None, :, :]) ** 2).sum(-1)  # (chunk, n_angles)
            out[start : start + _CHUNK, k] = (
                logsumexp(-0.5 * sq / noise**2, axis=1) - math.log(c.shape[0]) + log_norm
            )
    return out


def log_density(x: np.ndarray, name: str, noise: float = NOISE, n_angles: int = 2048) -> np.ndarray:
    """log p(x) of the toy generator ``name`` (uniform classes), shape (N,)."""
    lc = log_class_densities(x, class_curves(name, n_angles), noise)
    return logsumexp(lc, axis=1) - math.log(lc.shape[1])


def limits_from_samples(x: np.ndarray, curves: list[np.ndarray], noise: float) -> dict[str, float]:
    """Entropy (nats) and Bayes error (%) of the uniform-class mixture, estimated on ``x``.

    ``x`` must be samples of that mixture; returns the estimates and their standard errors.
    """
    log_joint = log_class_densities(x, curves, noise) - math.log(len(curves))
    log_px = logsumexp(log_joint, axis=1)
    risk = 1.0 - np.exp(log_joint - log_px[:, None]).max(axis=1)  # 1 - max_y p(y | x)
    n = x.shape[0]
    return {
        "entropy_nats": float(-log_px.mean()),
        "entropy_se": float(log_px.std(ddof=1) / math.sqrt(n)),
        "bayes_error_pct": float(100.0 * risk.mean()),
        "bayes_error_se": float(100.0 * risk.std(ddof=1) / math.sqrt(n)),
        "n_samples": n,
    }


def toy_limits(
    name: str,
    n_samples: int = 200_000,
    seed: int = LIMITS_SEED,
    noise: float = NOISE,
    n_angles: int = 2048,
) -> dict[str, Any]:
    """Differential entropy and Bayes error of the toy data set ``name``, with standard errors.

    Args:
        name: "moons" or "circles".
        n_samples: Monte Carlo samples drawn with ``make_toy`` (balanced classes, even count).
        seed: seed of those samples.
        noise: the generator's noise standard deviation (``NOISE`` = 0.1).
        n_angles: quadrature points of the angle integral per class.

    Returns:
        ``entropy_nats``, ``entropy_se``, ``bayes_error_pct``, ``bayes_error_se``,
        ``n_samples`` and the settings used.
    """
    x, _ = make_toy(name, n=n_samples, noise=noise, seed=seed)
    out = limits_from_samples(x.double().numpy(), class_curves(name, n_angles), noise)
    return {**out, "dataset": name, "noise": noise, "seed": seed, "n_angles": n_angles}
