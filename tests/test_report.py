"""Tests of scnf.report (tables, figures, REPORT.md) and scnf.provenance."""

from __future__ import annotations

import csv
import json
import logging
import math
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import scnf
from scnf.provenance import collect, git_state, write_json
from scnf.report import (
    build_table,
    collect_curves,
    count_verdicts,
    diff_in_paper_std,
    load_paper_results,
    match_runs,
    plot_curves,
    plot_fig2,
    plot_toy,
    read_runs,
    summarise,
    verdict,
    write_report,
    write_runs,
    write_table,
)
from scnf.report.report import read_tag
from scnf.report.runs import run_row, training_cost

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# ../shared beside the checkout, as tests/conftest.py finds the MNIST copy.
SHARED = Path(__file__).resolve().parents[2] / "shared"
PAPER = {"follows_paper": True, "description": "the paper's protocol"}
QUICK = {"follows_paper": False, "description": "CPU pipeline check."}


@pytest.fixture(scope="module")
def paper() -> dict[str, Any]:
    return load_paper_results()


def run_record(
    dataset: str = "mnist",
    preset: str = "mnist-glow",
    mode: str = "sgd",
    clf_weight: float = 0.0,
    zf_dim: int = 196,
    seed: int = 0,
    test_error: float = 2.0,
    train_error: float = 0.0,
    test_nll: float = 800.0,
    test_bpd: float | None = 1.15,
    protocol: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A metrics.json record shaped like the evaluate step's output."""
    if dataset == "mnist":
        f, h = "glow", preset.removeprefix("mnist-")
    else:
        _, f, h = preset.split("-")
    return {
        "run": {
            "dataset": dataset,
            "preset": preset,
            "f": f,
            "h": h,
            "mode": mode,
            "clf_weight": clf_weight,
            "zf_dim": zf_dim,
            "seed": seed,
            "protocol": protocol or {"train.max_steps": 1000, "data.num_train": None},
        },
        "test_error": test_error,
        "train_error": train_error,
        "test_nll": test_nll,
        "test_bpd": test_bpd,
        "num_test": 10000,
        "provenance": {"commit": None},
    }


def toy(dataset: str, preset: str, seed: int, err: float, nll: float, **kw: Any) -> dict[str, Any]:
    return run_record(dataset, preset, zf_dim=2, seed=seed, test_error=err, test_nll=nll,
                      test_bpd=None, **kw)  # fmt: skip


def runs(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The runs.csv frame of metrics records (what the tables read)."""
    return pd.DataFrame([run_row(r) for r in records])


def find(rows: list[dict[str, Any]], **key: Any) -> dict[str, Any]:
    (row,) = [r for r in rows if all(r[k] == v for k, v in key.items())]
    return row


# ---------------------------------------------------------------- statistics and verdicts


def test_summarise_by_hand() -> None:
    assert summarise([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)  # ddof = 1: sqrt((1 + 0 + 1) / 2)
    assert summarise([0.5, 0.7, 0.9])[1] == pytest.approx(0.2)
    assert summarise([5.0]) == (5.0, 0.0, 1)
    assert summarise([]) == (None, None, 0)


def test_verdict_cases_named_in_the_issue() -> None:
    # a huge spread (or a chance-level classifier) is never "reproduced"
    assert verdict(42.96, 37.94, 3, 5.3, 6.3, floor=0.5) == "inconclusive"
    assert verdict(50.0, 40.0, 3, 5.3, 6.3, floor=0.5) == "inconclusive"
    # much better than published is "better", not a failure
    assert verdict(1.177, 0.088, 3, 1.68, 0.13, floor=0.02) == "better"
    assert verdict(1.00, 0.01, 3, 1.145, 0.004, floor=0.01) == "better"
    # Table 3, z_f = 784: chance-level runs with a chance-level spread are not a reproduction
    assert verdict(88.5, 2.5, 3, 91.1, None, floor=0.5) == "inconclusive"
    # a single seed is never judged on its own (zero) spread
    assert verdict(1.9, 0.0, 1, 1.9, 0.3, floor=0.5) == "inconclusive"
    assert verdict(50.0, 0.0, 1, 1.9, 0.3, floor=0.5) == "inconclusive"


def test_verdict_rule() -> None:
    # two experiments with the paper's own mean and std agree
    for mean, std, floor in ((0.6, 0.4, 0.5), (1.9, 0.3, 0.5), (1.145, 0.004, 0.01)):
        assert verdict(mean, std, 3, mean, std, floor) == "reproduced"
    # significantly worse / better, by more than the floor
    assert verdict(3.0, 0.1, 3, 1.9, 0.3, floor=0.5) == "worse"
    assert verdict(0.5, 0.1, 3, 1.9, 0.3, floor=0.5) == "better"
    # significant but within the floor (the paper prints one decimal): not "worse"
    assert verdict(2.0, 0.02, 3, 1.9, 0.0, floor=0.5) == "reproduced"
    # a published std of 0.0 or none: the floor sets the resolution
    assert verdict(0.0, 0.0, 3, 0.0, None, floor=0.5) == "reproduced"
    assert verdict(2.6, 0.9, 3, 2.6, None, floor=0.5) == "inconclusive"  # too noisy for 0.5
    assert verdict(None, None, 0, 1.9, 0.3) == "not run"
    assert verdict(2.0, 0.1, 3, None, None) == "n/a"  # no published value: nothing to compare
    assert verdict(None, None, 0, None, None) == "n/a"


def test_verdict_interval_is_welch() -> None:
    from scipy import stats

    from scnf.report.verdict import interval

    # ours 2.0 +- 0.3 (n=3) vs paper 1.9 +- 0.3 (3 splits): se^2 = 0.06, dof = 4
    lo, hi = interval(2.0, 0.3, 3, 1.9, 0.3)
    t = stats.t.ppf(0.95, 4)
    half = t * math.sqrt(0.06)
    assert (lo, hi) == (pytest.approx(0.1 - half), pytest.approx(0.1 + half))
    # no published std: the dof are ours alone (n - 1)
    lo, hi = interval(2.0, 0.3, 5, 1.9, None)
    assert hi - 0.1 == pytest.approx(stats.t.ppf(0.95, 4) * 0.3 / math.sqrt(5))


def test_diff_in_paper_std() -> None:
    assert diff_in_paper_std(2.5, 1.9, 0.3) == pytest.approx(2.0)
    assert diff_in_paper_std(1.0, 1.9, 0.0) is None
    assert diff_in_paper_std(1.0, 2.6, None) is None
    assert diff_in_paper_std(None, 1.9, 0.3) is None


def test_paper_results_match_the_shared_transcription(paper: dict[str, Any]) -> None:
    shared_yaml = SHARED / "paper" / "paper_results.yaml"
    if not shared_yaml.is_file():
        pytest.skip(f"{shared_yaml} not found: ../shared is not beside this checkout")
    shared = load_paper_results(shared_yaml)
    assert [len(paper[t]["rows"]) for t in ("table1", "table2", "table3")] == [8, 8, 5]
    ours = json.loads(json.dumps(paper))
    # The two documented differences: the baseline row is M1+M2 (the shared copy calls it M2),
    # and Kingma et al.'s own M2 row is added with its source.
    added = [r for r in ours["table2"]["rows"] if "source" in r]
    assert [r["model"] for r in added] == ["kingma2014-m2"] and added[0]["error"] == [11.97, 1.71]
    ours["table2"]["rows"] = [r for r in ours["table2"]["rows"] if "source" not in r]
    for row in shared["table2"]["rows"]:
        if row["model"] == "kingma2014-m2":
            row["model"] = "kingma2014-m1m2"
    assert ours == shared


# ---------------------------------------------------------------- tables


def test_table1_numbers_and_not_run(paper: dict[str, Any]) -> None:
    metrics = [
        toy("moons", "toy-glow-glow", s, e, n)
        for s, e, n in [(0, 0.5, 1.10), (1, 0.7, 1.12), (2, 0.9, 1.14)]
    ] + [toy("circles", "toy-glow-gmm", 0, 50.0, 1.28)]
    rows = build_table("table1", runs(metrics), paper)
    assert len(rows) == 8
    r = find(rows, dataset="moons", f="glow", h="glow")
    assert r["error_ours_mean"] == pytest.approx(0.7)
    assert r["error_ours_std"] == pytest.approx(0.2)
    assert r["error_n"] == 3
    assert (r["error_paper_mean"], r["error_paper_std"]) == (0.6, 0.4)
    assert r["error_diff_paper_std"] == pytest.approx(0.25)
    assert r["error_verdict"] == "reproduced"
    assert r["nll_ours_mean"] == pytest.approx(1.12)
    assert r["nll_verdict"] == "reproduced"
    one = find(rows, dataset="circles", f="glow", h="gmm")
    assert one["error_n"] == 1 and one["error_ours_std"] == 0.0
    assert one["error_verdict"] == one["nll_verdict"] == "inconclusive"  # one seed
    empty = find(rows, dataset="moons", f="ffjord", h="gmm")
    assert empty["error_n"] == 0 and empty["error_ours_mean"] is None
    assert empty["error_verdict"] == empty["nll_verdict"] == "not run"
    assert empty["error_paper_mean"] == 5.3  # paper value shown even when not run
    assert sum(r["error_verdict"] == "not run" for r in rows) == 6


def test_aggregation_equals_brute_force(paper: dict[str, Any]) -> None:
    rng = np.random.default_rng(3)
    records, values = [], {}
    for preset in ("toy-glow-glow", "toy-ffjord-gmm"):
        for dataset in ("moons", "circles"):
            n = int(rng.integers(1, 5))
            errs, nlls = rng.uniform(0, 30, n), rng.uniform(0.8, 2.0, n)
            values[(dataset, preset)] = (errs, nlls)
            records += [toy(dataset, preset, s, float(e), float(v))
                        for s, (e, v) in enumerate(zip(errs, nlls))]  # fmt: skip
    rows = build_table("table1", runs(records), paper)
    for (dataset, preset), (errs, nlls) in values.items():
        _, f, h = preset.split("-")
        r = find(rows, dataset=dataset, f=f, h=h)
        for m, vals in (("error", errs), ("nll", nlls)):
            assert r[f"{m}_n"] == len(vals)
            assert r[f"{m}_ours_mean"] == pytest.approx(sum(vals) / len(vals), rel=1e-12)
            brute = math.sqrt(sum((v - vals.mean()) ** 2 for v in vals) / (len(vals) - 1)) \
                if len(vals) > 1 else 0.0  # fmt: skip
            assert r[f"{m}_ours_std"] == pytest.approx(brute, rel=1e-12, abs=1e-15)


def test_no_runs_every_row_not_run(paper: dict[str, Any]) -> None:
    for tid, metrics in (("table1", ["error", "nll"]), ("table2", ["error", "bpd"])):
        rows = build_table(tid, [], paper)
        assert len(rows) == len(paper[tid]["rows"])
        cells = [(r[f"{m}_paper_mean"], r[f"{m}_verdict"]) for r in rows for m in metrics]
        assert {v for p, v in cells if p is not None} == {"not run"}
        assert {v for p, v in cells if p is None} <= {"n/a"}  # the baselines' bits/dim


def test_table2_keying(paper: dict[str, Any]) -> None:
    metrics = [
        run_record(preset="mnist-gmm", mode="em-sgd", clf_weight=1.0, seed=s, test_error=17.0)
        for s in range(3)
    ] + [
        run_record(preset="mnist-gmm", mode="em-sgd", clf_weight=0.0, seed=s, test_error=13.0)
        for s in range(2)
    ]
    metrics += [run_record(preset="mnist-glow", seed=s, test_error=1.8 + 0.1 * s,
                           test_bpd=1.146 + 0.001 * s) for s in range(3)]  # fmt: skip
    metrics += [run_record(preset="mnist-glow", seed=0, zf_dim=49, test_error=99.0)]  # Table 3
    metrics += [toy("moons", "toy-glow-glow", 0, 0.5, 1.1)]  # Table 1
    base = run_record(preset="kingma2014-m1m2", mode="vi", clf_weight=6000.0, zf_dim=None,
                      test_error=3.4, test_bpd=None)  # fmt: skip
    base["run"].update(f=None, h=None)
    metrics += [base]
    rows = build_table("table2", runs(metrics), paper)
    on = find(rows, model="scnf-gmm", optimisation="em-sgd", clf_loss=True)
    off = find(rows, model="scnf-gmm", optimisation="em-sgd", clf_loss=False)
    assert (on["error_n"], on["error_ours_mean"]) == (3, pytest.approx(17.0))
    assert (off["error_n"], off["error_ours_mean"]) == (2, pytest.approx(13.0))
    glow = find(rows, model="scnf-glow", optimisation="sgd", clf_loss=False)
    assert glow["error_n"] == 3 and glow["error_ours_mean"] == pytest.approx(1.9)  # not 99
    assert glow["bpd_verdict"] == "reproduced"
    m1m2 = find(rows, model="kingma2014-m1m2")
    assert m1m2["error_paper_mean"] == 3.3 and m1m2["error_n"] == 1
    assert m1m2["bpd_paper_mean"] is None and m1m2["bpd_verdict"] == "n/a"
    m2 = find(rows, model="kingma2014-m2")
    assert m2["error_paper_mean"] == 11.97 and m2["error_verdict"] == "not run"
    assert sum(r["error_n"] for r in rows) == 9  # the z_f = 49 and the toy run are not Table 2's


def test_table3_filter(paper: dict[str, Any]) -> None:
    metrics = [
        run_record(zf_dim=49, seed=0, test_error=2.4),
        run_record(zf_dim=49, seed=1, test_error=2.8),
        run_record(preset="mnist-gmm", zf_dim=49, seed=2, test_error=90.0),
        run_record(mode="em-sgd", zf_dim=49, seed=3, test_error=90.0),
        run_record(clf_weight=0.5, zf_dim=49, seed=4, test_error=90.0),
    ]
    rows = build_table("table3", runs(metrics), paper)
    r = find(rows, zf_dim=49)
    assert r["test_error_n"] == 2
    assert r["test_error_ours_mean"] == pytest.approx(2.6)
    assert r["test_error_ours_std"] == pytest.approx(math.sqrt(0.08))
    assert r["test_error_paper_std"] is None and r["test_error_diff_paper_std"] is None
    # 2 seeds, std 0.28: the 90 % interval (+-1.79) is wider than 4 x floor
    assert r["test_error_verdict"] == "inconclusive"
    assert r["train_error_verdict"] == "reproduced"
    assert find(rows, zf_dim=784)["test_error_verdict"] == "not run"


def test_different_protocols_never_share_a_cell(paper: dict[str, Any]) -> None:
    sgd = toy("moons", "toy-glow-glow", 0, 0.5, 1.1)
    em = toy("moons", "toy-glow-glow", 1, 0.5, 1.1, mode="em-sgd")
    with pytest.raises(ValueError, match=r"differ in \['mode'"):
        build_table("table1", runs([sgd, em]), paper)
    short = toy("moons", "toy-glow-glow", 1, 0.5, 1.1,
                protocol={"train.max_steps": 200, "data.num_train": None})  # fmt: skip
    with pytest.raises(ValueError, match=r"protocol\.train\.max_steps"):
        build_table("table1", runs([sgd, short]), paper)
    small = toy("moons", "toy-glow-glow", 1, 0.5, 1.1,
                protocol={"train.max_steps": 1000, "data.num_train": 500})  # fmt: skip
    with pytest.raises(ValueError, match=r"protocol\.data\.num_train"):
        build_table("table1", runs([sgd, small]), paper)
    with pytest.raises(ValueError, match="duplicate seeds"):
        build_table("table1", runs([sgd, toy("moons", "toy-glow-glow", 0, 0.9, 1.1)]), paper)


def test_run_identity_covers_what_changes_a_result() -> None:
    from scnf.evaluate import run_summary
    from scnf.train.config import run_config_from_dict

    def ident(**train: Any) -> dict[str, Any]:
        cfg = run_config_from_dict(
            {"dataset": "moons", "preset": "toy-glow-glow", "split": "s.json",
             "model": {"flow_hidden": 32}, "data": {"num_test": 500}, "train": train}
        )  # fmt: skip
        return run_summary(cfg)["protocol"]

    base = ident()
    assert base["model.flow_hidden"] == 32 and base["data.num_test"] == 500
    for key, value in (
        ("max_steps", 200),
        ("epochs", 3),
        ("schedule", "cosine"),
        ("lr", 0.1),
        ("optimizer", "adam"),
        ("batch_size", 64),
        ("weight_decay", 0.0),
        ("gmm_m_step", "gradient"),
    ):
        assert ident(**{key: value}) != base, key
    # where and how it runs does not change what is learned
    assert ident(progress=False, checkpoint_every=7, device="cpu") == base
    # a key added later, at the value earlier runs were trained with, is left out: records
    # written before it existed match those written after
    assert "train.gmm_m_step" not in base and ident(gmm_m_step="closed-form") == base


def test_unmatched_runs_are_reported(paper: dict[str, Any], caplog: Any) -> None:
    odd = run_record(zf_dim=100)
    odd["path"] = "runs/zf100/metrics.json"
    with caplog.at_level(logging.WARNING, logger="scnf.report.tables"):
        cells, unmatched = match_runs("table3", runs([odd, run_record(zf_dim=98)]), paper)
    assert list(unmatched["path"]) == ["runs/zf100/metrics.json"]
    assert "runs/zf100/metrics.json" in caplog.text
    assert len(cells[(98,)]) == 1 and sum(map(len, cells.values())) == 1


def _write_metrics(tmp_path: Path, records: list[dict[str, Any]]) -> list[Path]:
    paths = []
    for i, rec in enumerate(records):
        p = tmp_path / "runs" / f"run{i}" / "metrics.json"
        write_json(p, rec)
        paths.append(p)
    return paths


def _runs_csv(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    out = tmp_path / "runs.csv"
    write_runs(_write_metrics(tmp_path, records), out)
    return out


def test_runs_csv_round_trip(tmp_path: Path) -> None:
    records = [toy("moons", "toy-glow-glow", s, e, 1.11) for s, e in [(0, 0.5), (1, 0.7)]]
    paths = _write_metrics(tmp_path, records)
    write_json(paths[0].parent / "train_metrics.json",
               {"steps": 300, "train_wall_s": 12.5, "mon_heldout_nll": 1.2})  # fmt: skip
    write_runs(paths, tmp_path / "runs.csv")
    back = read_runs(tmp_path / "runs.csv")
    assert list(back["seed"]) == [0, 1] and list(back["test_error"]) == [0.5, 0.7]
    assert back.loc[0, "steps"] == 300 and back.loc[1, "steps"] is None
    assert back.loc[0, "final_mon_heldout_nll"] == 1.2
    assert back.loc[0, "protocol.train.max_steps"] == 1000
    assert back.loc[0, "test_bpd"] is None and back.loc[0, "path"] == str(paths[0])
    # reproducing one cell by hand, as the README shows
    raw = pd.read_csv(tmp_path / "runs.csv")
    cell = raw[(raw.dataset == "moons") & (raw.f == "glow") & (raw.h == "glow")].test_error
    assert (cell.mean(), cell.std()) == (pytest.approx(0.6), pytest.approx(math.sqrt(0.02)))


def test_training_cost_sums_cpu_seconds_per_run_group(tmp_path: Path) -> None:
    """runs.csv carries each run's train_cpu_s (every attempt of a resumed run); the report's
    cost table sums it per run folder, seeds pooled, and says where a run did not record it."""
    records = [run_record(seed=s) for s in range(3)] + [toy("moons", "toy-glow-glow", 0, 1, 1)]
    folders = [f"mnist/glow-sgd-zf196/seed{s}" for s in range(3)] + ["moons/glow-glow/seed0"]
    paths = []
    for rec, folder in zip(records, folders, strict=True):
        paths.append(tmp_path / "results/x/runs" / folder / "metrics.json")
        write_json(paths[-1], rec)
    for p, cpu in zip(paths, [1000.0, 1200.0, None, 30.0]):
        train = {"steps": 10, "train_wall_s": 1.5 * (cpu or 2000.0)}
        write_json(p.parent / "train_metrics.json", train | ({"train_cpu_s": cpu} if cpu else {}))
    write_runs(paths, tmp_path / "runs.csv")
    back = read_runs(tmp_path / "runs.csv")
    assert list(back["train_cpu_s"]) == [1000.0, 1200.0, None, 30.0]
    cost = training_cost(back)
    assert list(cost["group"]) == ["mnist/glow-sgd-zf196", "moons/glow-glow"]
    assert list(cost["runs"]) == [3, 1] and list(cost["cpu_recorded"]) == [2, 1]
    assert list(cost["train_cpu_s"]) == [2200.0, 30.0]
    assert list(cost["train_wall_s"]) == [1.5 * 4200.0, 45.0]
    out = tmp_path / "REPORT.md"
    write_report(out, "cpu", {}, {}, {"timestamp_utc": "now"}, {"train x": 1.0}, cost=cost)
    text = out.read_text()
    assert "| mnist/glow-sgd-zf196 | 3 | 2,200 (2 of 3 runs) | 0.61 (2 of 3 runs) | 6,300 |" in text
    assert "| **total** (3 of 4 runs recorded) | | **2,230** | **0.62** | |" in text
    assert text.index("## Training cost") < text.index("## Wall times")


def test_write_table_csv_and_markdown(tmp_path: Path) -> None:
    records = [toy("moons", "toy-glow-glow", s, e, 1.11) for s, e in [(0, 0.5), (1, 0.7), (2, 0.9)]]
    out_csv, out_md = tmp_path / "t" / "table1.csv", tmp_path / "t" / "table1.md"
    rows = write_table("table1", _runs_csv(tmp_path, records), out_csv, out_md, protocol=PAPER)
    with out_csv.open(newline="") as fh:
        read = list(csv.DictReader(fh))
    assert len(read) == len(rows) == 8
    assert read[0]["dataset"] == "moons" and float(read[0]["error_ours_mean"]) == pytest.approx(0.7)
    assert read[-1]["error_ours_mean"] == "" and read[-1]["error_verdict"] == "not run"
    md = out_md.read_text()
    assert md.startswith("**Table 1.** Test error and NLL on two toy datasets")
    pid = rows[0]["protocol_id"]
    cell = "| 0.70 ± 0.20 (n=3: 0.50, 0.70, 0.90) | 0.6 ± 0.4 | +0.25 | reproduced |"
    assert f"| moons | glow | glow {cell}" in md
    assert f"- `{pid}`: num_train=all, max_steps=1000" in md
    assert "Welch" in md and "not run" in md
    counts, follows = count_verdicts(md)
    assert follows is True
    assert counts == {"reproduced": 2, "better": 0, "worse": 0, "inconclusive": 0, "not run": 14}


def test_protocol_lines_name_the_optimisation_where_no_column_does(tmp_path: Path) -> None:
    """Table 1 has no optimisation column: a row trained with EM-SGD says so in its protocol;
    Table 2 shows mode and L_clf as columns and leaves them out of the protocol line."""
    em = {"train.mode": "em-sgd", "train.clf_weight": 0.0, "train.lr": 0.003}
    sgd = {"train.mode": "sgd", "train.clf_weight": 0.0, "train.lr": 0.001}
    records = [
        toy("moons", "toy-glow-gmm", s, 1.0, 1.2, mode="em-sgd", protocol=em) for s in range(3)
    ]
    records += [toy("moons", "toy-glow-glow", s, 0.5, 1.1, protocol=sgd) for s in range(3)]
    rows = write_table("table1", _runs_csv(tmp_path, records), tmp_path / "t1.csv",
                       tmp_path / "t1.md", protocol=PAPER)  # fmt: skip
    md = (tmp_path / "t1.md").read_text()
    gmm, glow = (
        find(rows, h="gmm", f="glow", dataset="moons"),
        find(rows, h="glow", f="glow", dataset="moons"),
    )
    assert gmm["protocol_id"] != glow["protocol_id"]
    assert f"- `{gmm['protocol_id']}`: clf_weight=0.0, lr=0.003, mode=em-sgd" in md
    assert f"- `{glow['protocol_id']}`: clf_weight=0.0, lr=0.001, mode=sgd" in md
    mnist = [run_record(mode="em-sgd", seed=s, protocol=em) for s in range(2)]
    write_table("table2", _runs_csv(tmp_path, mnist), tmp_path / "t2.csv", tmp_path / "t2.md",
                protocol=PAPER)  # fmt: skip
    assert "lr=0.003" in (md2 := (tmp_path / "t2.md").read_text()) and "mode=" not in md2


def test_protocol_lines_of_a_shared_runs_csv(tmp_path: Path) -> None:
    """A runs.csv holding two families (toy runs and MNIST-side settings): integer settings
    read back as integers, the other family's keys are neither shown nor hashed."""
    toy_protocol = {"train.batch_size": 256, "train.lr": 0.001, "train.grad_clip": None}
    other = {"train.alpha_per_n": 0.1, "model.hidden": 600}
    records = [toy("moons", "toy-glow-glow", s, 0.5, 1.1, protocol=toy_protocol) for s in range(3)]
    alone = write_table("table1", _runs_csv(tmp_path, records), tmp_path / "a.csv",
                        tmp_path / "a.md", protocol=PAPER)  # fmt: skip
    records += [run_record(seed=s, protocol=other) for s in range(2)]
    csv = _runs_csv(tmp_path, records)
    assert read_runs(csv)["protocol.train.batch_size"].tolist() == [256, 256, 256, None, None]
    rows = write_table("table1", csv, tmp_path / "t1.csv", tmp_path / "t1.md", protocol=PAPER)
    md = (tmp_path / "t1.md").read_text()
    pid = find(rows, h="glow", f="glow", dataset="moons")["protocol_id"]
    assert pid == find(alone, h="glow", f="glow", dataset="moons")["protocol_id"]
    assert f"- `{pid}`: batch_size=256, grad_clip=null, lr=0.001" in md
    assert "alpha_per_n" not in md and "256.0" not in md


def test_reduced_protocol_banner(tmp_path: Path) -> None:
    records = [toy("moons", "toy-glow-glow", s, 0.6, 1.11) for s in range(3)]
    out_md = tmp_path / "table1.md"
    write_table("table1", _runs_csv(tmp_path, records), tmp_path / "t.csv", out_md,
                protocol=QUICK, config_name="quick")  # fmt: skip
    md = out_md.read_text()
    assert md.startswith("> **Not the paper's protocol.** Config `quick`: CPU pipeline check.")
    assert count_verdicts(md) == (
        {"reproduced": 2, "better": 0, "worse": 0, "inconclusive": 0, "not run": 14},
        False,
    )


def test_write_table_lists_unmatched(tmp_path: Path) -> None:
    csv_path = _runs_csv(tmp_path, [run_record(zf_dim=100), run_record(zf_dim=49)])
    write_table("table3", csv_path, tmp_path / "t3.csv", tmp_path / "t3.md", protocol=PAPER)
    md = (tmp_path / "t3.md").read_text()
    assert "match no paper row (1)" in md and "run0/metrics.json" in md
    assert "| 49 | 2.00 ± 0.00 (n=1: 2.00) | 2.6 | — | inconclusive |" in md


# ---------------------------------------------------------------- figures


def _npz(path: Path, zf_dim: int, n: int = 4) -> Path:
    rng = np.random.default_rng(zf_dim)
    np.savez(
        path,
        originals=rng.random((n, 28, 28), dtype=np.float32),
        reconstructions=rng.random((n, 28, 28), dtype=np.float32),
        zf_dim=np.int64(zf_dim),
    )
    return path


def test_plot_fig2(tmp_path: Path) -> None:
    files = [_npz(tmp_path / f"rec{d}.npz", d) for d in (196, 49, 98)]
    out = tmp_path / "figs" / "fig2.png"
    plot_fig2(files, out)
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="duplicate"):
        plot_fig2([files[0], _npz(tmp_path / "again.npz", 196)], tmp_path / "x.png")


def test_plot_toy(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = scnf.make_model("toy-glow-gmm")
    model.train()
    x = torch.randn(64, 2)
    y = (x[:, 0] > 0).long()
    labelled = torch.zeros(64, dtype=torch.bool)
    labelled[:4] = True
    out = tmp_path / "toy.png"
    plot_toy(model, x, y, labelled, out, title="moons: glow/gmm", grid_size=24, chunk=100)
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert model.training  # mode restored


# ---------------------------------------------------------------- report and provenance


def _log(run_dir: Path, entries: list[dict[str, Any]]) -> None:
    (run_dir / "train_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_curves_and_plot(tmp_path: Path) -> None:
    paths = _write_metrics(tmp_path, [toy("moons", "toy-glow-glow", s, 0.5, 1.1) for s in (0, 1)])
    for i, p in enumerate(paths):
        _log(p.parent, [
            {"epoch": 1, "step": 4, "train_nll": 2.0},  # no monitor this epoch: dropped
            {"epoch": 50, "step": 200, "mon_heldout_nll": 1.3 - 0.01 * i, "mon_heldout_error": 2.0,
             "mon_labelled_error": 0.0, "mon_heldout_bpd": None},
            {"epoch": 100, "step": 400, "mon_heldout_nll": 1.2, "mon_heldout_error": 1.0,
             "mon_labelled_error": 0.0, "mon_heldout_bpd": None},
        ])  # fmt: skip
    curves = collect_curves(paths)
    assert len(curves) == 4 and list(curves["step"]) == [200, 400, 200, 400]
    assert "mon_heldout_bpd" not in curves.columns  # null monitors are not curves
    assert set(curves["seed"]) == {0, 1}
    out = tmp_path / "curves.png"
    plot_curves(curves, out, title="table1")
    assert out.read_bytes()[:8] == PNG_MAGIC
    plot_curves(pd.DataFrame(), tmp_path / "empty.png")  # nothing logged: a figure saying so
    assert (tmp_path / "empty.png").read_bytes()[:8] == PNG_MAGIC


def _report(tmp_path: Path, protocol: dict[str, Any], name: str) -> str:
    records = [toy("moons", "toy-glow-glow", s, 0.5 + 0.01 * s, 1.11) for s in range(3)]
    csv_path = _runs_csv(tmp_path, records)
    tables = {}
    for tid in ("table1", "table2"):
        tables[tid] = tmp_path / "tables" / f"{tid}.md"
        write_table(tid, csv_path, tmp_path / "tables" / f"{tid}.csv", tables[tid],
                    protocol=protocol, config_name=name)  # fmt: skip
    png = tmp_path / "figs" / "fig2.png"
    plot_fig2([_npz(tmp_path / "r49.npz", 49)], png)
    curve = tmp_path / "figs" / "curves-table1.png"
    plot_curves(pd.DataFrame(), curve)
    out = tmp_path / "report" / "REPORT.md"
    prov = collect({"name": name}, wall_time_s=1.0)
    write_report(out, name, tables, {"Fig. 2: reconstructions": png}, prov, {"train": 12.5},
                 protocol=protocol, curves={"table1": curve})  # fmt: skip
    text = out.read_text()
    for tid, p in tables.items():
        assert p.read_text().strip() in text, tid
    assert "![Fig. 2: reconstructions](../figs/fig2.png)" in text
    assert "(../figs/curves-table1.png)" in text and (out.parent / "../figs/fig2.png").exists()
    assert f"`{name}`" in text and "| train | 12.5 |" in text
    return text


def test_write_report_paper_protocol(tmp_path: Path) -> None:
    text = _report(tmp_path, PAPER, "paper")
    assert "Not the paper's protocol" not in text
    # 16 + 14 cells (Table 2's baseline bits/dim cells have no published value);
    # moons glow/glow: 2 reproduced
    assert "| **all** | **2** | **0** | **0** | **0** | **28** |" in text


def test_write_report_reduced_protocol_counts_no_reproduction(tmp_path: Path) -> None:
    text = _report(tmp_path, QUICK, "quick")
    head = text.split("## How this report was produced")[0]
    assert "**Not the paper's protocol.** Config `quick`" in head
    assert "no cell counts as a reproduction of the paper" in text
    assert "| **all** | **2** | **0** | **0** | **0** | **28** |" in text
    assert "A reduced protocol: none of these cells is a reproduction of the paper." in text


def test_provenance_fields() -> None:
    prov = collect({"lr": 1e-3}, wall_time_s=2.5)
    for key in ("commit", "dirty", "timestamp_utc", "hostname", "platform", "python", "cpu_count"):
        assert key in prov
    assert {"torch", "torchvision", "torchdiffeq", "numpy"} <= set(prov["versions"])
    assert prov["device"] == "cpu" or prov["cuda_capability"]
    assert prov["config"] == {"lr": 1e-3} and prov["wall_time_s"] == 2.5
    json.dumps(prov)  # JSON-able


def test_provenance_outside_git(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SCNF_GIT_COMMIT", raising=False)
    prov = collect(repo=tmp_path)
    assert prov["commit"] is None and prov["dirty"] is None
    assert collect(repo=tmp_path / "missing")["commit"] is None
    monkeypatch.setenv("SCNF_GIT_COMMIT", "abc1234")  # a copy sent to a GPU machine
    assert git_state(tmp_path) == {"commit": "abc1234", "dirty": None}


def test_provenance_dirty_means_code_changed_not_results(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "scnf").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "scnf" / "model.py").write_text("a = 1\n")
    (tmp_path / "results" / "table.md").write_text("| 1 |\n")
    (tmp_path / "README.md").write_text("docs\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert git_state(tmp_path / "scnf") == {"commit": git_state(tmp_path)["commit"], "dirty": False}
    (tmp_path / "results" / "table.md").write_text("| 2 |\n")  # regenerated output
    (tmp_path / "scnf" / "new_untracked.py").write_text("")
    assert git_state(tmp_path / "scnf")["dirty"] is False
    (tmp_path / "README.md").write_text("edited while a DAG runs\n")  # documentation
    assert git_state(tmp_path / "scnf")["dirty"] is False
    (tmp_path / "scnf" / "model.py").write_text("a = 2\n")  # changed code
    assert git_state(tmp_path / "scnf")["dirty"] is True


def test_write_json_atomic(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.json"
    write_json(target, {"x": 1, "p": Path("/tmp")})
    write_json(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert [p.name for p in target.parent.iterdir()] == ["b.json"]  # no temporary left behind
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular"):
        write_json(target, circular)
    assert json.loads(target.read_text()) == {"x": 2}  # a failed write leaves the old file
    assert [p.name for p in target.parent.iterdir()] == ["b.json"]


def test_table1_shows_the_data_limits(tmp_path: Path) -> None:
    limits = {
        d: {"entropy_nats": e, "entropy_se": 0.001, "bayes_error_pct": b, "bayes_error_se": 0.002}
        for d, e, b in (("moons", 1.01, 0.06), ("circles", 0.805, 0.001))
    }
    write_json(tmp_path / "limits.json", limits)
    records = [toy("moons", "toy-glow-glow", s, 0.6, 1.11) for s in range(3)]
    limits_path = tmp_path / "limits.json"
    rows = write_table("table1", _runs_csv(tmp_path, records), tmp_path / "t.csv",
                       tmp_path / "t.md", protocol=PAPER, limits_path=limits_path)  # fmt: skip
    assert find(rows, dataset="circles", f="glow", h="gmm")["limit_nll"] == 0.805
    md = (tmp_path / "t.md").read_text()
    assert "limit: Bayes error (%) | limit: entropy (nats)" in md
    assert "| reproduced | 0.060 ± 0.002 | 1.010 ± 0.001 |" in md


def test_report_names_what_was_left_out(tmp_path: Path) -> None:
    """A family or baseline model left out is named with its reason, never filled in."""
    out = tmp_path / "REPORT.md"
    prov = collect({"name": "paper"}, wall_time_s=1.0)
    write_report(out, "paper", {}, {}, prov, protocol=PAPER, families=["toy", "baseline"],
                 baselines_left_out=["m2"])  # fmt: skip
    text = out.read_text()
    assert "## Not run" in text
    left_out = "M2 (Kingma et al., 2014, on pixels) was left out of this run (`baseline.models`)"
    assert left_out in text
    assert "The SCNF MNIST family" in text and "The toy family" not in text
    write_report(out, "paper", {}, {}, prov, protocol=PAPER, families=["toy", "baseline", "mnist"])
    assert "## Not run" not in out.read_text()


# ---------------------------------------------------------------- what the report says first


def test_per_seed_values_show_a_failed_split(tmp_path: Path) -> None:
    """A split that failed is visible beside the mean, not hidden in a large std."""
    records = [toy("moons", "toy-glow-gmm", s, e, 1.1 + 0.01 * s)
               for s, e in [(2, 20.4), (0, 0.47), (1, 0.40)]]  # fmt: skip
    out_md = tmp_path / "t1.md"
    rows = write_table("table1", _runs_csv(tmp_path, records), tmp_path / "t1.csv", out_md,
                       protocol=PAPER)  # fmt: skip
    row = find(rows, dataset="moons", f="glow", h="gmm")
    assert row["error_seeds"] == [0, 1, 2] and row["error_values"] == [0.47, 0.40, 20.4]
    assert "| 7.09 ± 11.53 (n=3: 0.47, 0.40, 20.40) | 1.2 ± 1.2 |" in out_md.read_text()
    assert "| 1.110 ± 0.010 (n=3: 1.100, 1.110, 1.120) |" in out_md.read_text()
    with (tmp_path / "t1.csv").open(newline="") as fh:
        first = next(csv.DictReader(fh))
    assert json.loads(first["error_values"]) == [] and first["error_n"] == "0"  # moons glow/glow


def _baseline(model: str, seed: int, err: float, epochs: int) -> dict[str, Any]:
    rec = run_record(preset=f"kingma2014-{model}", mode="vi", clf_weight=6000.0, zf_dim=None,
                     seed=seed, test_error=err, test_bpd=None,
                     protocol={"train.epochs": epochs, "data.num_train": None})  # fmt: skip
    rec["run"].update(f=None, h=None)
    return rec


def test_baseline_caveat_compares_its_epochs_with_the_authors_schedule(tmp_path: Path) -> None:
    from scnf.report.tables import KINGMA2014_EPOCHS

    assert KINGMA2014_EPOCHS == 3000  # Kingma et al. (2014), nips14-ssl run_2layer_ssl.py
    records = [_baseline("m1m2", s, 5.0 + s, 300) for s in range(3)]
    records += [_baseline("m2", s, 39.0 + s, 80) for s in range(3)]
    out_md = tmp_path / "t2.md"
    rows = write_table("table2", _runs_csv(tmp_path, records), tmp_path / "t2.csv", out_md,
                       protocol=PAPER)  # fmt: skip
    m1m2 = find(rows, model="kingma2014-m1m2")["caveat"]
    assert m1m2.startswith("kingma2014-m1m2 was stopped at 300 of the authors' 3,000 epochs")
    assert "80 of the authors' 3,000 epochs" in find(rows, model="kingma2014-m2")["caveat"]
    assert find(rows, model="scnf-glow", optimisation="sgd")["caveat"] is None
    md = out_md.read_text()
    assert f"**Caveat:** {m1m2}" in md
    assert read_tag(md)["caveats"][0] == m1m2
    # The authors' full schedule carries no caveat.
    full = [_baseline("m1m2", s, 3.3, KINGMA2014_EPOCHS) for s in range(3)]
    rows = write_table("table2", _runs_csv(tmp_path / "full", full), tmp_path / "f.csv",
                       tmp_path / "f.md", protocol=PAPER)  # fmt: skip
    assert find(rows, model="kingma2014-m1m2")["caveat"] is None
    assert "Caveat" not in (tmp_path / "f.md").read_text()


def test_report_says_first_what_has_no_evidence(tmp_path: Path) -> None:
    """The first lines name the tables and claims with no run, count *better* apart from
    *reproduced*, and carry the baselines' caveat; all of it read from the tables."""
    records = [toy("moons", "toy-glow-glow", s, 0.5 + 0.01 * s, 1.11) for s in range(3)]
    records += [toy("circles", "toy-ffjord-glow", s, 0.05, 1.0 + 0.001 * s) for s in range(3)]
    records += [_baseline("m1m2", s, 5.0 + 0.5 * s, 300) for s in range(3)]
    csv_path = _runs_csv(tmp_path, records)
    tables = {}
    for tid in ("table1", "table2", "table3"):
        tables[tid] = tmp_path / "tables" / f"{tid}.md"
        write_table(tid, csv_path, tmp_path / "tables" / f"{tid}.csv", tables[tid],
                    protocol=PAPER, config_name="paper")  # fmt: skip
    out = tmp_path / "REPORT.md"
    prov = collect({"name": "paper"}, wall_time_s=1.0)
    write_report(out, "paper", tables, {}, prov, protocol=PAPER,
                 families=["toy", "baseline"])  # fmt: skip
    head = out.read_text().split("## How this report was produced")[0]
    assert "**No evidence yet**" in head
    assert "table3 (the effect of the size of z_f on MNIST): all 5 rows" in head
    assert "the paper's main claim): 7 of 8 rows: scnf-glow / sgd / no; " in head
    assert "kingma2014-m2 / vi / yes" in head  # M2 not run here either
    assert "Fig. 2 (reconstructions from z_f alone): not made" in head
    assert "table1 (" in head  # six of its rows have no run
    # moons glow/glow: both reproduced; circles ffjord/glow: both better than published.
    assert "table1: 2 reproduced, 2 better than published (of 4 cells)" in head
    assert "table2: 1 worse (of 1 cell)" in head
    assert "counted apart from *reproduced*" in head
    assert "kingma2014-m1m2 was stopped at 300 of the authors' 3,000 epochs" in head
    assert "reproductions of the paper |" not in out.read_text()
