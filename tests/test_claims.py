"""The Claims section: the test rule on constructed cases that must come out each way, the
claims on constructed runs, Fig. 2's reconstruction error, the report and README tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scnf.report import claims as cl
from scnf.report.claims import (
    CLAIMS,
    aggregate,
    compare,
    evaluate_claims,
    read_claims_tag,
    reconstruction_errors,
    welch,
)
from scnf.report.report import write_report

# --- The rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1.8, 2.0, 2.1], [14.0, 12.5, 16.0], "supported"),  # clearly lower
        ([14.0, 12.5, 16.0], [1.8, 2.0, 2.1], "contradicted"),  # clearly higher
        ([2.0, 2.1, 1.9], [2.05, 1.95, 2.0], "contradicted"),  # equal: not lower by the floor
        ([1.0, 20.0, 3.0], [8.0, 9.0, 25.0], "inconclusive"),  # lower on average, huge spread
        ([2.0], [14.0, 12.5, 16.0], "inconclusive"),  # one seed has no spread
        ([], [14.0, 12.5, 16.0], "not run"),
        ([2.0, 2.05, 2.1], [2.3, 2.35, 2.4], "contradicted"),  # lower, but surely by < 0.5
        ([1.9, 2.0, 2.1], [2.3, 2.4, 2.5], "inconclusive"),  # lower by 0.4 +- 0.17: undecided
    ],
)
def test_lower_rule(a: list[float], b: list[float], expected: str) -> None:
    assert compare("lower", a, b, 0.5)[0] == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1.90, 2.00, 2.10], [1.95, 2.05, 1.90], "supported"),  # within 1 point, precisely
        ([1.9, 2.0, 2.1], [14.0, 12.5, 16.0], "contradicted"),  # far apart, precisely
        ([1.0, 9.0, 3.0], [2.0, 8.0, 1.0], "inconclusive"),  # equal means, but too noisy
        ([2.0], [2.0, 2.1], "inconclusive"),
        ([2.0, 2.1], [], "not run"),
    ],
)
def test_same_rule(a: list[float], b: list[float], expected: str) -> None:
    assert compare("same", a, b, 1.0)[0] == expected


def test_noise_cannot_pass_either_way() -> None:
    """Two draws of the same noisy experiment: never supported as 'lower', never as 'same'
    unless the spread is small enough to resolve the margin."""
    rng = np.random.default_rng(0)
    outcomes = {"lower": set(), "same": set()}
    for _ in range(200):
        a, b = rng.normal(10, 5, 3), rng.normal(10, 5, 3)
        for kind in outcomes:
            outcomes[kind].add(compare(kind, list(a), list(b), 0.5 if kind == "lower" else 1.0)[0])
    assert "supported" not in outcomes["same"]
    # 'lower' at the 5 % level with a floor: a rare false positive at most
    supported = sum(
        compare("lower", list(rng.normal(10, 5, 3)), list(rng.normal(10, 5, 3)), 0.5)[0]
        == "supported"
        for _ in range(400)
    )
    assert supported <= 400 * 0.05


def test_welch_interval_matches_scipy_welch_test() -> None:
    """hi < 0 exactly when scipy's one-sided Welch t-test rejects 'a >= b' at 5 %."""
    rng = np.random.default_rng(1)
    for _ in range(100):
        a, b = rng.normal(0, 1, 3), rng.normal(rng.uniform(-3, 3), 2, 4)
        d, lo, hi = welch(a, b)
        p = stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue
        assert (hi < 0) == (p < cl.ALPHA)
        assert d == pytest.approx(a.mean() - b.mean())
        assert d - lo == pytest.approx(hi - d)


def test_constant_side_is_a_one_sample_test() -> None:
    a = [86.0, 89.0, 91.0]
    d, lo, hi = welch(a, [90.0], constant=True)
    p = stats.ttest_1samp(a, 90.0, alternative="less").pvalue
    assert (hi < 0) == (p < cl.ALPHA) and d == pytest.approx(np.mean(a) - 90.0)
    assert compare("same", a, [90.0], 10.0, constant=True)[0] == "supported"
    assert compare("same", [20.0, 22.0, 21.0], [90.0], 10.0, constant=True)[0] == "contradicted"


def test_aggregate() -> None:
    assert aggregate(["supported", "supported"]) == "supported"
    assert aggregate(["supported", "contradicted", "not run"]) == "contradicted"
    assert aggregate(["not run", "not run"]) == "not run"
    assert aggregate(["supported", "not run"]) == "inconclusive"
    assert aggregate(["supported", "inconclusive"]) == "inconclusive"
    with pytest.raises(ValueError, match="kind"):
        compare("greater", [1.0, 2.0], [1.0, 2.0], 0.5)


# --- The claims on constructed runs ---------------------------------------------------------


def _run(seed: int, **row: object) -> dict[str, object]:
    base = {"dataset": "mnist", "f": None, "h": None, "clf_weight": 0.0, "zf_dim": 196,
            "seed": seed, "protocol.train.lr": 0.002, "train_error": 0.0, "test_bpd": 1.5,
            "test_nll": None}  # fmt: skip
    return base | row


def _mnist_runs(zf784_error: float = 88.0) -> pd.DataFrame:
    rows = []
    for s in range(3):
        rows += [
            _run(s, preset="mnist-glow", mode="sgd", test_error=10.0 + s),
            _run(s, preset="mnist-gmm", mode="sgd", test_error=60.0 + s, test_bpd=1.5 + s / 1e3),
            _run(s, preset="kingma2014-m1m2", mode="vi", clf_weight=1.0, zf_dim=None,
                 test_error=5.0 + s / 10, test_bpd=None),
            _run(s, preset="mnist-glow", mode="sgd", zf_dim=784, test_error=zf784_error + s),
            _run(s, preset="mnist-glow", mode="sgd", zf_dim=49, test_error=12.0 + s),
        ]  # fmt: skip
    return pd.DataFrame(rows)


def _by_id(results: list[cl.ClaimResult]) -> dict[str, cl.ClaimResult]:
    return {r.claim.cid: r for r in results}


def test_claims_on_constructed_mnist_runs(tmp_path: Path) -> None:
    res = _by_id(evaluate_claims(_mnist_runs()))
    assert res["T2-beats-m1m2"].verdict == "contradicted"  # 10-12 % vs 5 %
    glow_gmm = res["T2-glow-beats-gmm"]
    assert [o.verdict for o in glow_gmm.outcomes] == ["supported", "not run", "not run"]
    assert glow_gmm.verdict == "inconclusive"  # part of the claim was not run
    assert res["T2-sgd-em-same"].verdict == "not run"
    assert res["T1-glow-head"].verdict == "not run" and res["F2-196-close"].verdict == "not run"
    assert res["T3-784-chance"].verdict == "supported"
    overfit = res["T3-large-zf-overfit"]
    assert [o.verdict for o in overfit.outcomes] == ["not run", "supported"]
    small = res["T3-small-zf-generalise"]
    verdicts = {(o.comparison.a.key, o.comparison.b.key): o.verdict for o in small.outcomes}
    assert verdicts[(49,), (784,)] == verdicts[(196,), (784,)] == "supported"
    assert verdicts[(98,), (784,)] == "not run"
    # 784 generalises best: both chance and the ordering are contradicted
    res = _by_id(evaluate_claims(_mnist_runs(zf784_error=5.0)))
    assert res["T3-784-chance"].verdict == "contradicted"
    assert res["T3-small-zf-generalise"].verdict == "contradicted"


def test_claims_refuse_a_row_that_mixes_protocols() -> None:
    runs = _mnist_runs()
    runs.loc[0, "protocol.train.lr"] = 0.001
    with pytest.raises(ValueError, match="protocol.train.lr"):
        evaluate_claims(runs)


def _recon(path: Path, zf: int, noise: float, n: int = 10) -> Path:
    rng = np.random.default_rng(zf)
    originals = rng.uniform(0, 1, (n, 28, 28)).astype(np.float32)
    recon = originals + rng.normal(0, noise, originals.shape).astype(np.float32)
    np.savez(path, originals=originals, reconstructions=recon, zf_dim=np.array(zf),
             labels=np.arange(n))  # fmt: skip
    return path


def test_reconstruction_error_and_fig2_claim(tmp_path: Path) -> None:
    close, far = _recon(tmp_path / "a.npz", 196, 0.02), _recon(tmp_path / "b.npz", 49, 0.6)
    zf, errors = reconstruction_errors(close)
    assert zf == 196 and len(errors) == 10 and max(errors) < 0.01
    # by hand for one image: clipped to [0, 1], MSE over the image's mean squared intensity
    with np.load(far) as d:
        x, r = d["originals"][3].astype(float), np.clip(d["reconstructions"][3], 0, 1)
    assert reconstruction_errors(far)[1][3] == pytest.approx(((r - x) ** 2).mean() / (x**2).mean())
    res = _by_id(evaluate_claims(pd.DataFrame(), [close, far]))
    assert res["F2-196-close"].verdict == "supported"
    swapped = [_recon(tmp_path / "c.npz", 196, 0.6), _recon(tmp_path / "d.npz", 49, 0.02)]
    res = _by_id(evaluate_claims(pd.DataFrame(), swapped))
    assert res["F2-196-close"].verdict == "contradicted"


def test_section_in_report_and_readme_table(tmp_path: Path) -> None:
    runs_csv = tmp_path / "runs.csv"
    _mnist_runs().to_csv(runs_csv, index=False)
    claims_md = tmp_path / "claims.md"
    results = cl.write_claims(runs_csv, [], claims_md, {"follows_paper": False}, "cpu")
    text = claims_md.read_text()
    tag = read_claims_tag(text)
    assert tag == {r.claim.cid: r.verdict for r in results}
    assert set(tag) == {c.cid for c in CLAIMS} and "Config `cpu` is a reduced protocol" in text
    out = tmp_path / "REPORT.md"
    write_report(out, "cpu", {}, {}, {"timestamp_utc": "now"}, claims=claims_md)
    report = out.read_text()
    assert "## Claims" in report and "**The paper's claims**" in report
    assert report.index("## Claims") < report.index("## Tables")
    assert read_claims_tag(report) == tag
    table = cl.claims_summary_table({"cpu": out, "missing": out})
    assert len(table) == 2 + len(CLAIMS)
    assert "| `cpu` | `missing` |" in table[0]
    row = next(line for line in table if line.startswith("| SCNF-GLOW (SGD) has lower"))
    assert row.endswith("| contradicted | contradicted |")


def test_readme_claims_table_is_the_generated_one() -> None:
    """The README's claims table is generated from the committed reports, never typed: rerun
    `python -m scnf.report.claims --readme README.md` after a report changes."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text(encoding="utf-8")
    block = "\n".join(cl.readme_block(root))
    assert block in text, (
        "README's claims table is stale: python -m scnf.report.claims --readme README.md"
    )


def test_update_readme_rewrites_only_the_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{cl.README_START}\nold\n{cl.README_END}\nrest\n")
    assert cl.update_readme(readme, root=tmp_path)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\nrest\n") and "old" not in text
    assert not cl.update_readme(readme, root=tmp_path)
    (tmp_path / "plain.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="markers"):
        cl.update_readme(tmp_path / "plain.md")
