"""The toy data's own limits (scnf.data.toy_limits): mixture density, entropy, Bayes error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import i0e
from scipy.stats import norm

from scnf.data import make_toy
from scnf.data.toy import CIRCLES_FACTOR, NOISE
from scnf.data.toy_limits import (
    class_curves,
    limits_from_samples,
    log_class_densities,
    log_density,
    toy_limits,
)


@pytest.mark.parametrize("name", ["moons", "circles"])
def test_density_integrates_to_one_on_a_grid(name: str) -> None:
    h = 0.02
    g1, g2 = np.meshgrid(np.arange(-2.0, 3.0, h), np.arange(-2.0, 2.0, h))
    grid = np.stack([g1.ravel(), g2.ravel()], axis=1)
    mass = np.exp(log_density(grid, name, n_angles=512)).sum() * h * h
    assert mass == pytest.approx(1.0, abs=2e-4)


def test_circle_density_matches_the_bessel_closed_form() -> None:
    """Angle-averaged N(x; r (cos t, sin t), s^2 I) = exp(-(rho^2 + r^2) / 2s^2) I0(rho r / s^2)
    / (2 pi s^2), with rho = |x|."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.3, 1.3, (200, 2))
    rho = np.linalg.norm(x, axis=1)
    lc = log_class_densities(x, class_curves("circles", 2048), NOISE)
    for k, r in enumerate([1.0, CIRCLES_FACTOR]):
        arg = rho * r / NOISE**2
        ref = -(rho**2 + r**2) / (2 * NOISE**2) + np.log(i0e(arg)) + arg
        ref -= math.log(2 * math.pi * NOISE**2)
        np.testing.assert_allclose(lc[:, k], ref, atol=1e-9, rtol=0)


def test_moons_density_is_high_on_the_arcs_and_symmetric() -> None:
    # The moons are point-symmetric about (0.5, 0.25): class 0 at x maps to class 1 at (1,0.5)-x.
    rng = np.random.default_rng(1)
    x = rng.normal(0.5, 1.0, (100, 2))
    lc = log_class_densities(x, class_curves("moons"), NOISE)
    lc_mirror = log_class_densities(np.array([1.0, 0.5]) - x, class_curves("moons"), NOISE)
    np.testing.assert_allclose(lc[:, 0], lc_mirror[:, 1], atol=1e-8)
    on_arc = log_density(np.array([[0.0, 1.0], [1.0, -0.5]]), "moons")
    off_arc = log_density(np.array([[0.5, 0.25], [3.0, 3.0]]), "moons")
    assert on_arc.min() > off_arc.max() + 1.0


def test_entropy_of_a_single_gaussian_matches_the_closed_form() -> None:
    """Noise only (every curve a single point): H = log(2 pi e s^2), Bayes error 50 %."""
    s = 0.3
    x = np.random.default_rng(2).normal(0.0, s, (50_000, 2))
    centre = [np.zeros((1, 2)), np.zeros((1, 2))]
    out = limits_from_samples(x, centre, s)
    exact = math.log(2 * math.pi * math.e * s**2)
    assert abs(out["entropy_nats"] - exact) < 4 * out["entropy_se"]
    assert out["entropy_se"] < 0.01
    assert out["bayes_error_pct"] == pytest.approx(50.0)


def test_bayes_error_of_two_gaussians_matches_the_closed_form() -> None:
    """Two classes N((+-a, 0), s^2 I): Bayes error Phi(-a / s); ~0 when well separated."""
    rng = np.random.default_rng(3)
    s, n = 0.1, 100_000
    for a, tol in [(0.15, None), (1.0, 1e-12)]:
        centres = [np.array([[-a, 0.0]]), np.array([[a, 0.0]])]
        y = rng.integers(0, 2, n)
        x = rng.normal(0.0, s, (n, 2)) + np.where(y[:, None] == 0, -a, a) * np.array([1.0, 0.0])
        out = limits_from_samples(x, centres, s)
        exact = 100.0 * norm.cdf(-a / s)
        if tol is None:
            assert abs(out["bayes_error_pct"] - exact) < 4 * out["bayes_error_se"]
        else:
            assert out["bayes_error_pct"] < tol


def test_limits_of_the_project_generators() -> None:
    moons = toy_limits("moons", n_samples=20_000)
    circles = toy_limits("circles", n_samples=20_000)
    assert moons["entropy_nats"] == pytest.approx(1.01, abs=0.03)
    assert 0.03 < moons["bayes_error_pct"] < 0.12
    assert circles["entropy_nats"] == pytest.approx(0.805, abs=0.03)
    assert circles["bayes_error_pct"] < 0.03
    for out in (moons, circles):
        assert 0 < out["entropy_se"] < 0.01 and 0 < out["bayes_error_se"] < 0.02


def test_limits_use_samples_of_the_generator() -> None:
    a = toy_limits("moons", n_samples=2000, seed=5, n_angles=256)
    b = toy_limits("moons", n_samples=2000, seed=5, n_angles=256)
    assert a == b
    x, _ = make_toy("moons", n=2000, seed=5)
    ref = -log_density(x.double().numpy(), "moons", n_angles=256).mean()
    assert a["entropy_nats"] == pytest.approx(ref, rel=1e-12)


def test_unknown_name_and_bad_noise_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown toy"):
        class_curves("spirals")
    with pytest.raises(ValueError, match="noise"):
        log_class_densities(np.zeros((1, 2)), class_curves("moons", 8), 0.0)
