"""The paper's conclusions, tested on one config's own runs: the report's *Claims* section.

A reduced protocol cannot reproduce the published numbers, but it can test what the paper
concludes from them: orderings and effects between rows trained the same way. Each claim is a
set of comparisons between rows of one ``runs.csv`` (rows of Tables 1-3, keyed as the tables
key them) or between Fig. 2's reconstruction arrays, each with a verdict:

Two samples ``a`` and ``b`` (the per-seed values of two rows; the per-image errors of two
reconstruction arrays; or a sample and a constant) give ``d = mean(a) - mean(b)`` and its 90 %
Welch interval ``[lo, hi] = d -/+ t * se`` (``se = sqrt(var(a)/n_a + var(b)/n_b)``, sample
variances; ``t`` the one-sided 95 % Student quantile at the Welch-Satterthwaite degrees of
freedom; a constant has no variance). Every metric is lower-is-better.

* ``lower`` ("A is lower than B"): **supported** when ``hi < -floor`` (A is significantly lower,
  one-sided test at 5 %, by more than the metric's floor); **contradicted** when ``lo > -floor``
  (A is significantly *not* lower by the floor: equal or higher); otherwise inconclusive.
* ``same`` ("A and B do not differ"; two one-sided tests, TOST, at 5 %): **supported** when
  ``[lo, hi]`` lies inside ``[-margin, margin]``; **contradicted** when it lies wholly outside
  (a difference larger than the margin is significant); otherwise inconclusive.
* Any sample with fewer than ``MIN_SAMPLES`` values: **inconclusive** (no spread to test with);
  a sample with no values at all: **not run**.

A claim holds several comparisons: **supported** when all are, **contradicted** when any is,
**not run** when none was run, otherwise **inconclusive**. The thresholds are stated per
metric in ``FLOORS`` and ``MARGINS``; a spread that makes an interval wide can only give
*inconclusive*, so noise cannot pass a claim in either direction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from scnf.report.tables import load_paper_results, match_runs

__all__ = [
    "CLAIMS",
    "CLAIMS_TAG",
    "CLAIM_VERDICTS",
    "Claim",
    "Comparison",
    "Side",
    "claims_markdown",
    "compare",
    "evaluate_claims",
    "read_claims_tag",
    "reconstruction_errors",
    "welch",
    "write_claims",
]

CLAIM_VERDICTS: tuple[str, ...] = ("supported", "contradicted", "inconclusive", "not run")
CLAIMS_TAG = "scnf-claims"  # HTML comment in REPORT.md: claim id -> verdict (README table)
ALPHA = 0.05  # level of each one-sided test
MIN_SAMPLES = 2
# "lower" needs a difference larger than this (about the paper's printed precision; nmse: 5 %
# of an image's energy).
FLOORS: dict[str, float] = {
    "test_error": 0.5, "train_error": 0.5, "test_nll": 0.02, "test_bpd": 0.01, "nmse": 0.05,
}  # fmt: skip
# "same" allows a difference up to this: twice the floor (error 1 point, NLL 0.04 nats,
# bits/dim 0.02), an effect the paper would print as a difference.
MARGINS: dict[str, float] = {k: 2.0 * v for k, v in FLOORS.items()}
CHANCE_ERROR = 90.0  # ten balanced classes
CHANCE_MARGIN = 10.0  # "near chance": within 10 points of it

_LABELS = {
    "test_error": "test error (%)",
    "train_error": "train error (%)",
    "test_nll": "test NLL (nats)",
    "test_bpd": "test bits/dim",
    "nmse": "reconstruction error (MSE / image energy)",
}


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a table row's metric, a Fig. 2 array's error, or a constant.

    ``table``: ``table1`` / ``table2`` / ``table3`` (``key`` the row key of that table, see
    ``scnf.report.tables.TABLES``), ``fig2`` (``key`` = ``(zf_dim,)``) or ``constant``
    (``value``). ``metric``: a ``runs.csv`` column, or ``nmse`` for Fig. 2.
    """

    table: str
    key: tuple[Any, ...] = ()
    metric: str = "test_error"
    value: float | None = None

    @property
    def label(self) -> str:
        if self.table == "constant":
            return f"{self.value:g}"
        key = "/".join("L_clf" if k is True else "no L_clf" if k is False else str(k)
                       for k in self.key)  # fmt: skip
        if self.table == "fig2":
            return f"Fig. 2 z_f {key}"
        if self.table == "table3":
            return f"z_f {key}"
        return key


@dataclass(frozen=True)
class Comparison:
    """``a`` is ``lower`` than ``b``, or the ``same`` as ``b`` (within the metric's margin)."""

    kind: str
    a: Side
    b: Side
    margin: float | None = None  # default: FLOORS (lower) or MARGINS (same) of a's metric

    def threshold(self) -> float:
        if self.margin is not None:
            return self.margin
        return (FLOORS if self.kind == "lower" else MARGINS)[self.a.metric]


@dataclass(frozen=True)
class Claim:
    """A conclusion of the paper, its source, and the comparisons that test it."""

    cid: str
    source: str
    text: str
    comparisons: tuple[Comparison, ...]
    note: str = ""


@dataclass
class Outcome:
    """A comparison's figures and verdict."""

    comparison: Comparison
    a_values: list[float]
    b_values: list[float]
    diff: float | None = None
    lo: float | None = None
    hi: float | None = None
    verdict: str = "not run"


@dataclass
class ClaimResult:
    claim: Claim
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return aggregate([o.verdict for o in self.outcomes])


def aggregate(verdicts: Sequence[str]) -> str:
    """A claim's verdict from its comparisons' (see the module docstring)."""
    if any(v == "contradicted" for v in verdicts):
        return "contradicted"
    if verdicts and all(v == "supported" for v in verdicts):
        return "supported"
    if not verdicts or all(v == "not run" for v in verdicts):
        return "not run"
    return "inconclusive"


def welch(
    a: Sequence[float], b: Sequence[float], constant: bool = False
) -> tuple[float, float, float]:
    """``(d, lo, hi)``: mean(a) - mean(b) and its (1 - 2 ALPHA) Welch interval.

    ``constant``: ``b`` is one exact value (no variance; the test is one-sample t).
    """
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = float(a_arr.mean() - b_arr.mean())
    va = float(a_arr.var(ddof=1)) / len(a_arr)
    vb = 0.0 if constant else float(b_arr.var(ddof=1)) / len(b_arr)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return d, d, d
    terms = (va**2 / (len(a_arr) - 1) if va else 0.0) + (vb**2 / (len(b_arr) - 1) if vb else 0.0)
    dof = (va + vb) ** 2 / terms
    t = float(stats.t.ppf(1.0 - ALPHA, dof))
    return d, d - t * se, d + t * se


def compare(
    kind: str, a: Sequence[float], b: Sequence[float], threshold: float, constant: bool = False
) -> tuple[str, float | None, float | None, float | None]:
    """``(verdict, d, lo, hi)`` of one comparison (rule: the module docstring)."""
    if kind not in ("lower", "same"):
        raise ValueError(f"comparison kind must be 'lower' or 'same', not {kind!r}")
    if not len(a) or not len(b):
        return "not run", None, None, None
    if len(a) < MIN_SAMPLES or (not constant and len(b) < MIN_SAMPLES):
        d = float(np.mean(a) - np.mean(b))
        return "inconclusive", d, None, None
    d, lo, hi = welch(a, b, constant)
    if kind == "lower":
        verdict = (
            "supported"
            if hi < -threshold
            else "contradicted"
            if lo > -threshold
            else "inconclusive"
        )
    elif -threshold <= lo and hi <= threshold:
        verdict = "supported"
    elif lo > threshold or hi < -threshold:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return verdict, d, lo, hi


# --- The claims ----------------------------------------------------------------------------


def _t1(dataset: str, f: str, h: str, metric: str = "test_error") -> Side:
    return Side("table1", (dataset, f, h), metric)


def _t2(model: str, mode: str, clf: bool, metric: str = "test_error") -> Side:
    return Side("table2", (model, mode, clf), metric)


def _t3(zf: int, metric: str = "test_error") -> Side:
    return Side("table3", (zf,), metric)


_TOY = [(d, f) for d in ("moons", "circles") for f in ("glow", "ffjord")]
_GLOW_SGD = ("scnf-glow", "sgd", False)
_SCNF_ROWS = [
    (m, mode, clf)
    for m in ("scnf-glow", "scnf-gmm")
    for mode, clf in (("sgd", False), ("em-sgd", True), ("em-sgd", False))
]

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "T1-glow-head", "Table 1",
        "The conditional Glow head h_phi has lower test error than the GMM head, on both "
        "datasets and with either f.",
        tuple(Comparison("lower", _t1(d, f, "glow"), _t1(d, f, "gmm")) for d, f in _TOY),
        note="Each head trains at the recipe chosen for it on validation data (config "
        "`toy.head_settings`: the GMM head with EM-SGD and L_clf weight 3), as the paper gives "
        "each its own; an error at the data's Bayes limit cannot be lower by the floor.",
    ),
    Claim(
        "T1-ffjord-glow", "Table 1",
        "FFJORD and Glow as f give roughly the same test error and NLL.",
        tuple(
            Comparison("same", _t1(d, "ffjord", h, m), _t1(d, "glow", h, m))
            for d in ("moons", "circles") for h in ("glow", "gmm")
            for m in ("test_error", "test_nll")
        ),
    ),
    Claim(
        "T2-beats-m1m2", "Table 2",
        "SCNF-GLOW (SGD) has lower test error than Kingma et al.'s M1+M2.",
        (Comparison("lower", _t2(*_GLOW_SGD), _t2("kingma2014-m1m2", "vi", True)),),
        note="M1+M2 is trained at its own settings (the config's baseline section), once per "
        "label split: a comparison across two protocols, as the paper's own.",
    ),
    Claim(
        "T2-glow-beats-gmm", "Table 2",
        "SCNF-GLOW has lower test error than SCNF-GMM (each optimisation and L_clf setting).",
        tuple(
            Comparison("lower", _t2("scnf-glow", mode, clf), _t2("scnf-gmm", mode, clf))
            for mode, clf in (("sgd", False), ("em-sgd", True), ("em-sgd", False))
        ),
    ),
    Claim(
        "T2-sgd-em-same", "Table 2",
        "SGD and EM-SGD give the same test error (EM-SGD with and without L_clf, each head).",
        tuple(
            Comparison("same", _t2(m, "em-sgd", clf), _t2(m, "sgd", False))
            for m in ("scnf-glow", "scnf-gmm") for clf in (False, True)
        ),
    ),
    Claim(
        "T2-same-bpd", "Table 2",
        "Every SCNF row has about the same bits/dim (each against SCNF-GLOW / SGD).",
        tuple(
            Comparison("same", _t2(*row, "test_bpd"), _t2(*_GLOW_SGD, "test_bpd"))
            for row in _SCNF_ROWS if row != _GLOW_SGD
        ),
    ),
    Claim(
        "T3-small-zf-generalise", "Table 3",
        "z_f of 49, 98 and 196 generalise: their test error is lower than at 392 and at 784.",
        tuple(
            Comparison("lower", _t3(small), _t3(big))
            for small in (49, 98, 196) for big in (392, 784)
        ),
    ),
    Claim(
        "T3-large-zf-overfit", "Table 3",
        "z_f of 392 and 784 overfit: training error far below test error.",
        tuple(Comparison("lower", _t3(z, "train_error"), _t3(z)) for z in (392, 784)),
    ),
    Claim(
        "T3-784-chance", "Table 3",
        f"At z_f 784 the test error is near chance ({CHANCE_ERROR:g} %, within "
        f"{CHANCE_MARGIN:g} points).",
        (Comparison("same", _t3(784), Side("constant", value=CHANCE_ERROR), CHANCE_MARGIN),),
    ),
    Claim(
        "F2-196-close", "Fig. 2",
        "Reconstructions from the 196 deepest components are closer to the images than those "
        "from 49.",
        (Comparison("lower", Side("fig2", (196,), "nmse"), Side("fig2", (49,), "nmse")),),
        note="Samples are Fig. 2's test images (one run per z_f, the first seed).",
    ),
)  # fmt: skip


# --- Values and verdicts ----------------------------------------------------------------------


def reconstruction_errors(path: str | Path) -> tuple[int, list[float]]:
    """``(zf_dim, per-image errors)`` of one ``scnf reconstruct`` array.

    The error of an image is its mean squared error over pixels divided by its mean squared
    intensity (the share of the image's energy the reconstruction misses); reconstructions are
    clipped to the pixel range [0, 1] first, as the figure shows them.
    """
    with np.load(path) as data:
        x = np.asarray(data["originals"], dtype=float).reshape(len(data["originals"]), -1)
        r = np.asarray(data["reconstructions"], dtype=float).reshape(x.shape)
        zf = int(data["zf_dim"])
    if not np.isfinite(r).all():
        raise ValueError(f"{path}: non-finite reconstructions")
    r = np.clip(r, 0.0, 1.0)
    energy = np.maximum((x**2).mean(1), 1e-12)
    return zf, list(((r - x) ** 2).mean(1) / energy)


def _values(side: Side, cells: Mapping[str, Mapping[Any, pd.DataFrame]],
            fig2: Mapping[int, list[float]]) -> list[float]:  # fmt: skip
    if side.table == "constant":
        return [float(side.value)]  # type: ignore[arg-type]
    if side.table == "fig2":
        return list(fig2.get(int(side.key[0]), []))
    group = cells.get(side.table, {}).get(side.key)
    if group is None or group.empty or side.metric not in group:
        return []
    return [float(v) for v in group.sort_values("seed")[side.metric].dropna()]


def evaluate_claims(
    runs: pd.DataFrame | None,
    recon_paths: Sequence[str | Path] = (),
    paper: dict[str, Any] | None = None,
    claims: Sequence[Claim] = CLAIMS,
) -> list[ClaimResult]:
    """Test every claim on one config's runs (``runs.csv``) and Fig. 2 arrays."""
    paper = paper or load_paper_results()
    frame = runs if runs is not None else pd.DataFrame()
    cells: dict[str, Mapping[Any, pd.DataFrame]] = {}
    for tid in ("table1", "table2", "table3"):
        cells[tid] = match_runs(tid, frame, paper)[0] if len(frame) else {}
    fig2 = dict(reconstruction_errors(p) for p in recon_paths)
    results = []
    for claim in claims:
        result = ClaimResult(claim)
        for comp in claim.comparisons:
            a, b = _values(comp.a, cells, fig2), _values(comp.b, cells, fig2)
            constant = comp.b.table == "constant"
            verdict, d, lo, hi = compare(comp.kind, a, b, comp.threshold(), constant)
            result.outcomes.append(Outcome(comp, a, b, d, lo, hi, verdict))
        results.append(result)
    return results


# --- Markdown -------------------------------------------------------------------------------


def _fmt(values: list[float]) -> str:
    if not values:
        return "not run"
    shown = " / ".join(f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}" for v in values[:10])
    return shown + (f" (+{len(values) - 10})" if len(values) > 10 else "")


def _interval(o: Outcome) -> str:
    if o.diff is None:
        return "-"
    if o.lo is None:
        return f"{o.diff:+.3g} (too few samples)"
    return f"{o.diff:+.3g} [{o.lo:+.3g}, {o.hi:+.3g}]"


def _test(c: Comparison) -> str:
    t = c.threshold()
    if c.kind == "lower":
        return f"A lower by > {t:g}"
    return f"\\|A - B\\| < {t:g}"


def claims_markdown(results: Sequence[ClaimResult], protocol_note: str = "") -> list[str]:
    """The report's *Claims* section (Markdown lines), ending with a machine-readable tag."""
    lines = [
        "## Claims",
        "",
        "The paper's conclusions, each tested on this report's own runs (rows of one protocol "
        "unless noted). " + protocol_note,
        "",
        "| claim | source | verdict |",
        "|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.claim.text} | {r.claim.source} | **{r.verdict}** |")
    lines += [
        "",
        "| claim | A | B | metric | A values | B values | A - B [90 % CI] | test | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for o in r.outcomes:
            c = o.comparison
            metric = _LABELS[c.a.metric]
            if c.b.table != "constant" and c.b.metric != c.a.metric:
                metric += f" vs {_LABELS[c.b.metric]}"
            lines.append(
                f"| {r.claim.cid} | {c.a.label} | {c.b.label} | {metric} | "
                f"{_fmt(o.a_values)} | {_fmt(o.b_values)} | {_interval(o)} | {_test(c)} | "
                f"{o.verdict} |"
            )
    notes = [f"{r.claim.cid}: {r.claim.note}" for r in results if r.claim.note]
    lines += [
        "",
        "*Test* (`scnf/report/claims.py`): A - B is the difference of the means over seeds (Fig. "
        '2: over images) with its 90 % Welch interval [lo, hi]. "A lower by > f" is '
        "*supported* when hi < -f (a one-sided test at 5 %) and *contradicted* when lo > -f; "
        '"\\|A - B\\| < m" (two one-sided tests at 5 %) is *supported* when [lo, hi] lies '
        "within [-m, m] and *contradicted* when it lies wholly outside; fewer than "
        f"{MIN_SAMPLES} values on a side: *inconclusive*. Floors f: error 0.5 points, NLL 0.02 "
        "nats, bits/dim 0.01, reconstruction error 0.05; margins m are twice the floors. A "
        "claim is supported when all its comparisons are, contradicted when any is."
        + (" " + " ".join(notes) if notes else ""),
        "",
        f"<!-- {CLAIMS_TAG}: {json.dumps({r.claim.cid: r.verdict for r in results})} -->",
        "",
    ]
    return lines


_TAG_RE = re.compile(r"<!--\s*" + re.escape(CLAIMS_TAG) + r":\s*(\{.*?\})\s*-->")


def read_claims_tag(markdown: str) -> dict[str, str]:
    """Claim id -> verdict from a report written by ``claims_markdown`` ({} if it has none)."""
    match = _TAG_RE.search(markdown)
    return json.loads(match.group(1)) if match else {}


def claims_summary_table(reports: Mapping[str, str | Path]) -> list[str]:
    """The README's table: one row per claim, one column per protocol (report name -> path)."""
    tags = {name: read_claims_tag(Path(p).read_text(encoding="utf-8"))
            for name, p in reports.items()}  # fmt: skip
    names = list(reports)
    lines = ["| claim | source | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]  # fmt: skip
    for claim in CLAIMS:
        cells = [tags[n].get(claim.cid, "no report") for n in names]
        lines.append(f"| {claim.text} | {claim.source} | " + " | ".join(cells) + " |")
    return lines


def write_claims(
    runs_csv: str | Path,
    recon_paths: Sequence[str | Path],
    out_md: str | Path,
    protocol: dict[str, Any] | None = None,
    config_name: str = "",
) -> list[ClaimResult]:
    """Test every claim on a config's ``runs.csv`` and Fig. 2 arrays; write the Markdown section."""
    from scnf.report.runs import read_runs

    runs = read_runs(runs_csv)
    results = evaluate_claims(runs, recon_paths)
    if protocol and protocol.get("follows_paper"):
        note = "These runs follow the paper's protocol."
    else:
        note = (
            f"Config `{config_name}` is a reduced protocol: a claim is tested at its settings "
            "(the same for the rows compared), so a verdict here says whether the effect shows "
            "at this protocol, not at the paper's."
        )
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(claims_markdown(results, note)), encoding="utf-8")
    return results


README_START = (
    "<!-- claims-table: generated by `python -m scnf.report.claims --readme README.md` -->"
)
README_END = "<!-- claims-table: end -->"
README_REPORTS = ("results/paper/REPORT.md", "results/cpu/REPORT.md", "results/quick/REPORT.md")


def readme_block(root: str | Path, reports: Sequence[str] = README_REPORTS) -> list[str]:
    """The README's claims table from the committed reports that exist under ``root``."""
    root = Path(root)
    found = {Path(r).parent.name: root / r for r in reports if (root / r).is_file()}
    return [README_START, *claims_summary_table(found), README_END]


def update_readme(readme: str | Path, root: str | Path | None = None) -> bool:
    """Rewrite the README's generated claims table in place; True when it changed."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme}: no claims-table markers ({README_START!r} ... {README_END!r})")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    new = head + "\n".join(readme_block(root or readme.parent)) + tail
    readme.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> None:
    """The README's claims table: printed from REPORT.md files, or rewritten in the README.

    ``python -m scnf.report.claims results/*/REPORT.md`` prints it;
    ``python -m scnf.report.claims --readme README.md`` rewrites the README's generated block
    from the committed reports (results/paper, results/cpu, results/quick).
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="*", type=Path, help="REPORT.md files")
    parser.add_argument("--readme", type=Path, help="rewrite this README's claims table")
    args = parser.parse_args(argv)
    if args.readme:
        changed = update_readme(args.readme)
        print(f"{args.readme}: claims table {'updated' if changed else 'unchanged'}")
    else:
        print("\n".join(claims_summary_table({p.parent.name: p for p in args.reports})))


if __name__ == "__main__":
    main()
