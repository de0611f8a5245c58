"""The verdict of one table cell: does our mean over seeds agree with the published one?

Every compared metric of Tables 1-3 (test / train error, NLL, bits/dim) is *lower is better*.
Let ``d = ours - paper`` be the difference of the two means, with the Welch standard error

    se = sqrt(s_ours**2 / n + s_paper**2 / 3)

(the paper's numbers are over ``PAPER_SEEDS`` = 3 label splits; a missing published std counts
as 0), and ``[lo, hi] = d -/+ t * se`` its 90 % confidence interval (``t``: the one-sided 95 %
quantile of Student's t with the Welch-Satterthwaite degrees of freedom). ``floor`` (``FLOORS``)
is the smallest difference that matters for the metric (about the paper's printed precision)
and ``m = max(s_paper, floor)``. Then:

* ``better``: ``hi < -floor``, ours is significantly lower (one-sided test at 5 %) by more
  than the floor.
* ``worse``: ``lo > floor``, significantly higher by more than the floor.
* ``reproduced``: neither, and the interval is narrow enough to say so: ``hi - lo <= 4 m``,
  i.e. the comparison resolves a difference of two published std (or two floors). A wide spread
  widens the interval, so noise alone can never pass: it gives ``inconclusive``.
* ``inconclusive``: otherwise, and whenever ours has fewer than ``MIN_SEEDS`` seeds (a single
  seed has no spread of its own, so it is never judged on one).
* ``not run``: no run of ours for a published value.
* ``n/a`` (``NO_PAPER_VALUE``): the paper publishes no value for the cell (Kingma et al.'s
  bits/dim), so there is nothing to compare; such cells are not counted among the verdicts.

With 3 seeds on each side an equivalence test with a margin of one published std (TOST) could
never pass even for two identical experiments (its interval is about +-1.7 std wide); the rule
above passes such a pair and still refuses any result that is imprecise or significantly off.
"""

from __future__ import annotations

import math

from scipy import stats

__all__ = [
    "FLOORS",
    "MIN_SEEDS",
    "NO_PAPER_VALUE",
    "PAPER_SEEDS",
    "VERDICTS",
    "interval",
    "verdict",
]

VERDICTS: tuple[str, ...] = ("reproduced", "better", "worse", "inconclusive", "not run")
NO_PAPER_VALUE = "n/a"  # a cell without a published value: shown, never counted
PAPER_SEEDS = 3  # label splits behind every published mean and std
MIN_SEEDS = 2  # fewer seeds of ours give no spread to test with
ALPHA = 0.05  # level of each one-sided test
# Smallest equivalence margin per metric: 0.5 percentage points of error, 0.02 nats of NLL,
# 0.01 bits/dim (about the last digit the paper prints for each).
FLOORS: dict[str, float] = {
    "error": 0.5,
    "test_error": 0.5,
    "train_error": 0.5,
    "nll": 0.02,
    "bpd": 0.01,
}


def interval(
    ours_mean: float, ours_std: float, n: int, paper_mean: float, paper_std: float | None
) -> tuple[float, float]:
    """The (1 - 2 * ALPHA) Welch confidence interval of ours - paper, as ``(lo, hi)``."""
    d = ours_mean - paper_mean
    a = ours_std**2 / n
    b = (paper_std or 0.0) ** 2 / PAPER_SEEDS
    se = math.sqrt(a + b)
    if se == 0.0:
        return d, d
    dof_terms = a**2 / (n - 1) + (b**2 / (PAPER_SEEDS - 1) if b else 0.0)
    dof = (a + b) ** 2 / dof_terms
    t = float(stats.t.ppf(1.0 - ALPHA, dof))
    return d - t * se, d + t * se


def verdict(
    ours_mean: float | None,
    ours_std: float | None,
    n: int,
    paper_mean: float | None,
    paper_std: float | None,
    floor: float = 0.0,
) -> str:
    """A lower-is-better metric's verdict: one of ``VERDICTS``, or ``NO_PAPER_VALUE``."""
    if paper_mean is None:
        return NO_PAPER_VALUE
    if n == 0 or ours_mean is None:
        return "not run"
    if n < MIN_SEEDS:
        return "inconclusive"
    lo, hi = interval(ours_mean, ours_std or 0.0, n, paper_mean, paper_std)
    if hi < -floor:
        return "better"
    if lo > floor:
        return "worse"
    if hi - lo <= 4.0 * max(paper_std or 0.0, floor):
        return "reproduced"
    return "inconclusive"
