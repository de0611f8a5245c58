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
import pytest
import torch

import scnf
from scnf.provenance import collect, git_state, write_json
from scnf.report import (
    build_table,
    count_verdicts,
    diff_in_paper_std,
    load_paper_results,
    match_runs,
    plot_fig2,
    plot_toy,
    summarise,
    verdict,
    write_report,
    write_table,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHARED_YAML = Path("/work/shared/paper/paper_results.yaml")


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


def find(rows: list[dict[str, Any]], **key: Any) -> dict[str, Any]:
    (row,) = [r for r in rows if all(r[k] == v for k, v in key.items())]
    return row


# ---------------------------------------------------------------- statistics and verdicts


def test_summarise_by_hand() -> None:
    assert summarise([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)  # ddof = 1: sqrt((1 + 0 + 1) / 2)
    assert summarise([0.5, 0.7, 0.9])[1] == pytest.approx(0.2)
    assert summarise([5.0]) == (5.0, 0.0, 1)
    assert summarise([]) == (None, None, 0)


def test_verdict_rule() -> None:
    # standard errors: tol = 2 * sqrt(0.3^2/3 + 0.3^2/3 + 0.5^2) = 1.1136
    assert verdict(3.0, 0.3, 3, 1.9, 0.3, floor=0.5) == "reproduced"
    assert verdict(3.05, 0.3, 3, 1.9, 0.3, floor=0.5) == "not reproduced"
    # a noisy result is not let through by its own spread: std 11 over 3 seeds
    # tol = 2 * sqrt(1.2^2/3 + 11^2/3 + 0.5^2) = 12.83 < |19.4 - 1.2|
    assert verdict(19.4, 11.0, 3, 1.2, 1.2, floor=0.5) == "not reproduced"
    # paper std 0.0: the floor alone sets the tolerance, 2 * 0.5 = 1.0
    assert verdict(2.9, 0.0, 3, 1.9, 0.0, floor=0.5) == "reproduced"
    assert verdict(2.95, 0.0, 3, 1.9, 0.0, floor=0.5) == "not reproduced"
    assert verdict(0.85, 0.0, 3, 1.9, 0.0, floor=0.5) == "not reproduced"  # symmetric
    assert verdict(None, None, 0, 1.9, 0.3) == "not run"
    assert verdict(2.0, 0.1, 3, None, None) == "not run"  # no published value
    assert verdict(2.6, 0.0, 1, 2.6, None) == "reproduced"  # no paper std (Table 3)


def test_diff_in_paper_std() -> None:
    assert diff_in_paper_std(2.5, 1.9, 0.3) == pytest.approx(2.0)
    assert diff_in_paper_std(1.0, 1.9, 0.0) is None
    assert diff_in_paper_std(1.0, 2.6, None) is None
    assert diff_in_paper_std(None, 1.9, 0.3) is None


def test_paper_results_package_copy(paper: dict[str, Any]) -> None:
    assert [len(paper[t]["rows"]) for t in ("table1", "table2", "table3")] == [8, 7, 5]
    if SHARED_YAML.exists():
        assert load_paper_results(SHARED_YAML) == paper


# ---------------------------------------------------------------- tables


def test_table1_numbers_and_not_run(paper: dict[str, Any]) -> None:
    metrics = [
        toy("moons", "toy-glow-glow", s, e, n)
        for s, e, n in [(0, 0.5, 1.10), (1, 0.7, 1.12), (2, 0.9, 1.14)]
    ] + [toy("circles", "toy-glow-gmm", 0, 50.0, 1.28)]
    rows = build_table("table1", metrics, paper)
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
    bad = find(rows, dataset="circles", f="glow", h="gmm")
    assert bad["error_n"] == 1 and bad["error_ours_std"] == 0.0
    assert bad["error_verdict"] == "not reproduced"
    assert bad["nll_verdict"] == "reproduced"
    empty = find(rows, dataset="moons", f="ffjord", h="gmm")
    assert empty["error_n"] == 0 and empty["error_ours_mean"] is None
    assert empty["error_verdict"] == empty["nll_verdict"] == "not run"
    assert empty["error_paper_mean"] == 5.3  # paper value shown even when not run
    assert sum(r["error_verdict"] == "not run" for r in rows) == 6


def test_no_runs_every_row_not_run(paper: dict[str, Any]) -> None:
    for tid, metrics in (("table1", ["error", "nll"]), ("table2", ["error", "bpd"])):
        rows = build_table(tid, [], paper)
        assert len(rows) == len(paper[tid]["rows"])
        assert {r[f"{m}_verdict"] for r in rows for m in metrics} == {"not run"}


def test_table2_keying(paper: dict[str, Any]) -> None:
    metrics = [
        run_record(preset="mnist-gmm", mode="em-sgd", clf_weight=1.0, seed=s, test_error=17.0)
        for s in range(3)
    ] + [
        run_record(preset="mnist-gmm", mode="em-sgd", clf_weight=0.0, seed=s, test_error=13.0)
        for s in range(2)
    ]
    metrics += [run_record(preset="mnist-glow", seed=0, test_error=1.8, test_bpd=1.146)]
    metrics += [run_record(preset="mnist-glow", seed=0, zf_dim=49, test_error=99.0)]  # Table 3
    metrics += [toy("moons", "toy-glow-glow", 0, 0.5, 1.1)]  # Table 1
    rows = build_table("table2", metrics, paper)
    on = find(rows, model="scnf-gmm", optimisation="em-sgd", clf_loss=True)
    off = find(rows, model="scnf-gmm", optimisation="em-sgd", clf_loss=False)
    assert (on["error_n"], on["error_ours_mean"]) == (3, pytest.approx(17.0))
    assert (off["error_n"], off["error_ours_mean"]) == (2, pytest.approx(13.0))
    glow = find(rows, model="scnf-glow", optimisation="sgd", clf_loss=False)
    assert glow["error_n"] == 1 and glow["error_ours_mean"] == pytest.approx(1.8)  # not 99
    assert glow["bpd_verdict"] == "reproduced"
    m2 = find(rows, model="kingma2014-m2")
    assert m2["error_paper_mean"] == 3.3 and m2["error_verdict"] == "not run"
    assert m2["bpd_paper_mean"] is None and m2["bpd_verdict"] == "not run"
    total = sum(r["error_n"] for r in rows)
    assert total == 6  # the z_f = 49 and the toy run are not Table 2 runs


def test_table3_filter(paper: dict[str, Any]) -> None:
    metrics = [
        run_record(zf_dim=49, seed=0, test_error=2.4),
        run_record(zf_dim=49, seed=1, test_error=2.8),
        run_record(preset="mnist-gmm", zf_dim=49, seed=2, test_error=90.0),
        run_record(mode="em-sgd", zf_dim=49, seed=3, test_error=90.0),
        run_record(clf_weight=0.5, zf_dim=49, seed=4, test_error=90.0),
    ]
    rows = build_table("table3", metrics, paper)
    r = find(rows, zf_dim=49)
    assert r["test_error_n"] == 2
    assert r["test_error_ours_mean"] == pytest.approx(2.6)
    assert r["test_error_ours_std"] == pytest.approx(math.sqrt(0.08))
    assert r["test_error_paper_std"] is None and r["test_error_diff_paper_std"] is None
    assert r["test_error_verdict"] == "reproduced"
    assert r["train_error_verdict"] == "reproduced"
    assert find(rows, zf_dim=784)["test_error_verdict"] == "not run"


def test_conflicting_configurations_never_share_a_cell(paper: dict[str, Any]) -> None:
    sgd = toy("moons", "toy-glow-glow", 0, 0.5, 1.1)
    em = toy("moons", "toy-glow-glow", 1, 0.5, 1.1, mode="em-sgd")
    with pytest.raises(ValueError, match="mixes configurations"):
        build_table("table1", [sgd, em], paper)
    with pytest.raises(ValueError, match="duplicate seeds"):
        build_table("table1", [sgd, toy("moons", "toy-glow-glow", 0, 0.9, 1.1)], paper)


def test_unmatched_runs_are_reported(paper: dict[str, Any], caplog: Any) -> None:
    odd = run_record(zf_dim=100)
    odd["path"] = "runs/zf100/metrics.json"
    with caplog.at_level(logging.WARNING, logger="scnf.report.tables"):
        cells, unmatched = match_runs("table3", [odd, run_record(zf_dim=98)], paper)
    assert unmatched == [odd]
    assert "runs/zf100/metrics.json" in caplog.text
    assert len(cells[(98,)]) == 1 and sum(map(len, cells.values())) == 1


def _write_metrics(tmp_path: Path, records: list[dict[str, Any]]) -> list[Path]:
    paths = []
    for i, rec in enumerate(records):
        p = tmp_path / "runs" / f"run{i}" / "metrics.json"
        write_json(p, rec)
        paths.append(p)
    return paths


def test_write_table_csv_and_markdown(tmp_path: Path) -> None:
    records = [toy("moons", "toy-glow-glow", s, e, 1.11) for s, e in [(0, 0.5), (1, 0.7), (2, 0.9)]]
    paths = _write_metrics(tmp_path, records)
    out_csv, out_md = tmp_path / "t" / "table1.csv", tmp_path / "t" / "table1.md"
    rows = write_table("table1", paths, out_csv, out_md)
    with out_csv.open(newline="") as fh:
        read = list(csv.DictReader(fh))
    assert len(read) == len(rows) == 8
    assert read[0]["dataset"] == "moons" and float(read[0]["error_ours_mean"]) == pytest.approx(0.7)
    assert read[-1]["error_ours_mean"] == "" and read[-1]["error_verdict"] == "not run"
    md = out_md.read_text()
    assert "Test error and NLL on two toy datasets" in md
    assert "| moons | glow | glow | 0.70 ± 0.20 (n=3) | 0.6 ± 0.4 | +0.25 | reproduced |" in md
    assert "2·sqrt" in md and "not run" in md
    assert count_verdicts(md) == {"reproduced": 2, "not reproduced": 0, "not run": 14}


def test_write_table_lists_unmatched(tmp_path: Path) -> None:
    paths = _write_metrics(tmp_path, [run_record(zf_dim=100), run_record(zf_dim=49)])
    write_table("table3", paths, tmp_path / "t3.csv", tmp_path / "t3.md")
    md = (tmp_path / "t3.md").read_text()
    assert "match no paper row (1)" in md and str(paths[0]) in md
    assert "| 49 | 2.00 ± 0.00 (n=1) | 2.6 | — | reproduced |" in md


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


def test_write_report(tmp_path: Path) -> None:
    paths = _write_metrics(tmp_path, [toy("moons", "toy-glow-glow", 0, 0.5, 1.11)])
    tables = {}
    for tid in ("table1", "table2"):
        tables[tid] = tmp_path / "tables" / f"{tid}.md"
        write_table(tid, paths, tmp_path / "tables" / f"{tid}.csv", tables[tid])
    fig = _npz(tmp_path / "r49.npz", 49)
    png = tmp_path / "figs" / "fig2.png"
    plot_fig2([fig], png)
    out = tmp_path / "report" / "REPORT.md"
    prov = collect({"name": "smoke"}, wall_time_s=1.0)
    write_report(out, "smoke", tables, {"Fig. 2: reconstructions": png}, prov, {"train": 12.5})
    text = out.read_text()
    for tid, p in tables.items():
        assert p.read_text().strip() in text, tid
    assert "![Fig. 2: reconstructions](../figs/fig2.png)" in text
    assert (out.parent / "../figs/fig2.png").exists()
    assert "`smoke`" in text and "| train | 12.5 |" in text
    assert "| **all** | **2** | **0** | **28** |" in text  # 16 cells + 14 cells, 2 reproduced


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
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert git_state(tmp_path / "scnf") == {"commit": git_state(tmp_path)["commit"], "dirty": False}
    (tmp_path / "results" / "table.md").write_text("| 2 |\n")  # regenerated output
    (tmp_path / "scnf" / "new_untracked.py").write_text("")
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
