"""Paper-vs-measured tables: Tables 1-3 of Atanov et al. (2019) next to this replication.

Input: one ``metrics.json`` per training run (see ``scnf.evaluate``), each with a ``run`` block
(dataset, preset, f, h, mode, clf_weight, zf_dim, seed) and the measured numbers. Every run is
mapped to at most one row of each table by an explicit key function; runs of one row are summarised
over seeds and compared with the published mean and standard deviation.

Statistics. Ours: mean and *sample* standard deviation (ddof = 1, the unbiased variance) over the
seeds, 0 for a single seed. The paper reports mean and std over 3 label splits.

Verdict (``verdict``): the two *means* are compared, each with its standard error (std / sqrt(n);
the paper's n is ``PAPER_SEEDS`` = 3): "reproduced" when
``|ours - paper| <= 2 * sqrt(paper_std**2 / 3 + ours_std**2 / n + floor**2)``, i.e. the difference
is within two combined standard errors, so a noisy result is not let through by its own spread;
the absolute ``floor`` (``FLOORS``: 0.5 percentage points of error, 0.02 nats of NLL, 0.01
bits/dim) keeps rows whose published std is 0.0 (or absent, as in Table 3) from demanding an
exact match. "not reproduced" otherwise; "not run" when no run
matches the row (or the paper gives no value to compare to).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "FLOORS",
    "METRICS",
    "TABLES",
    "VERDICTS",
    "build_table",
    "diff_in_paper_std",
    "format_table",
    "load_metrics",
    "load_paper_results",
    "match_runs",
    "summarise",
    "verdict",
    "write_table",
]

log = logging.getLogger(__name__)

VERDICTS: tuple[str, ...] = ("reproduced", "not reproduced", "not run")


@dataclass(frozen=True)
class Metric:
    """A compared metric: its ``metrics.json`` field, verdict floor and how it is printed."""

    source: str
    floor: float
    label: str
    unit: str
    decimals: int  # ours
    paper_decimals: int  # as the paper prints it


_ERR = {"floor": 0.5, "unit": "percentage points", "decimals": 2, "paper_decimals": 1}
METRICS: dict[str, Metric] = {
    "error": Metric("test_error", label="test error (%)", **_ERR),
    "test_error": Metric("test_error", label="test error (%)", **_ERR),
    "train_error": Metric("train_error", label="train error (%)", **_ERR),
    "nll": Metric("test_nll", 0.02, "NLL (nats)", "nats", 3, 2),
    "bpd": Metric("test_bpd", 0.01, "bits/dim", "bits/dim", 4, 3),
}
FLOORS: dict[str, float] = {name: m.floor for name, m in METRICS.items()}
VERDICT_TAG = "scnf-verdicts"  # HTML comment in the Markdown that the report counts
TABLE2_ZF_DIM = 196  # the paper's MNIST setting; other z_f sizes belong to Table 3 only
_MODEL_OF_PRESET = {"mnist-glow": "scnf-glow", "mnist-gmm": "scnf-gmm"}

Key = tuple[Any, ...]


@dataclass(frozen=True)
class TableSpec:
    """How one paper table is keyed.

    Attributes:
        keys: the paper row's key columns, in order.
        metrics: the compared metrics, in order.
        row_key: run block -> the row key it belongs to, or None when the run is not meant
            for this table (e.g. a toy run for Table 2). A key that names no paper row is an
            unmatched run and is reported, never dropped silently.
        note: a sentence for the Markdown footnote.
    """

    keys: tuple[str, ...]
    metrics: tuple[str, ...]
    row_key: Callable[[dict[str, Any]], Key | None]
    note: str = ""


def _table1_key(run: dict[str, Any]) -> Key | None:
    if run.get("dataset") not in ("moons", "circles"):
        return None
    return (run["dataset"], run["f"], run["h"])


def _table2_key(run: dict[str, Any]) -> Key | None:
    model = _MODEL_OF_PRESET.get(run.get("preset", ""))
    if run.get("dataset") != "mnist" or model is None or run.get("zf_dim") != TABLE2_ZF_DIM:
        return None
    return (model, run["mode"], float(run["clf_weight"]) > 0.0)


def _table3_key(run: dict[str, Any]) -> Key | None:
    if (
        run.get("dataset") != "mnist"
        or run.get("preset") != "mnist-glow"
        or run.get("mode") != "sgd"
        or float(run.get("clf_weight", 0.0)) != 0.0
    ):
        return None
    return (int(run["zf_dim"]),)


TABLES: dict[str, TableSpec] = {
    "table1": TableSpec(("dataset", "f", "h"), ("error", "nll"), _table1_key),
    "table2": TableSpec(
        ("model", "optimisation", "clf_loss"),
        ("error", "bpd"),
        _table2_key,
        note="scnf-glow <- preset mnist-glow, scnf-gmm <- mnist-gmm, with z_f = "
        f"{TABLE2_ZF_DIM}; clf_loss = clf_weight > 0. kingma2014-m2 is the paper's baseline "
        "(Kingma et al., 2014), not re-run here.",
    ),
    "table3": TableSpec(
        ("zf_dim",),
        ("test_error", "train_error"),
        _table3_key,
        note="Runs: preset mnist-glow, SGD, no L_clf. The paper gives no std for this table "
        "(taken as 0).",
    ),
}


def load_paper_results(path: str | Path | None = None) -> dict[str, Any]:
    """Published numbers (``paper_results.yaml``); the copy shipped in the package by default."""
    if path is None:
        text = resources.files("scnf.report").joinpath("paper_results.yaml").read_text("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def load_metrics(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read ``metrics.json`` files; each gets a ``"path"`` entry so warnings can name it."""
    out = []
    for p in paths:
        record = json.loads(Path(p).read_text(encoding="utf-8"))
        record.setdefault("path", str(p))
        out.append(record)
    return out


def summarise(values: list[float]) -> tuple[float | None, float | None, int]:
    """Mean, sample standard deviation (ddof = 1; 0.0 for one value) and count.

    Returns ``(None, None, 0)`` for an empty list.
    """
    n = len(values)
    if n == 0:
        return None, None, 0
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0, 1
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)), n


PAPER_SEEDS = 3  # label splits behind every published mean and std


def verdict(
    ours_mean: float | None,
    ours_std: float | None,
    n: int,
    paper_mean: float | None,
    paper_std: float | None,
    floor: float = 0.0,
) -> str:
    """Compare our summary with the published one.

    "not run" when ``n == 0`` or the paper has no value; "reproduced" when
    ``|ours - paper| <= 2 * sqrt(paper_std**2 / PAPER_SEEDS + ours_std**2 / n + floor**2)``
    (standard errors of the two means; a missing std counts as 0); "not reproduced" otherwise.
    ``floor`` is the per-metric absolute tolerance of ``FLOORS``, needed because some published
    std are exactly 0.0.
    """
    if n == 0 or ours_mean is None or paper_mean is None:
        return "not run"
    se2 = (paper_std or 0.0) ** 2 / PAPER_SEEDS + (ours_std or 0.0) ** 2 / n
    tol = 2.0 * math.sqrt(se2 + floor**2)
    return "reproduced" if abs(ours_mean - paper_mean) <= tol else "not reproduced"


def diff_in_paper_std(
    ours_mean: float | None, paper_mean: float | None, paper_std: float | None
) -> float | None:
    """(ours - paper) / paper_std; None when not run or the paper's std is 0 or missing."""
    if ours_mean is None or paper_mean is None or not paper_std:
        return None
    return (ours_mean - paper_mean) / paper_std


def _paper_value(entry: Any) -> tuple[float | None, float | None]:
    """A paper cell as (mean, std): ``[m, s]``, a bare number (no std), or null."""
    if entry is None:
        return None, None
    if isinstance(entry, list | tuple):
        return float(entry[0]), float(entry[1])
    return float(entry), None


def _signature(run: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Everything that defines a configuration except the seed."""
    return tuple(sorted((k, v) for k, v in run.items() if k != "seed"))


def match_runs(
    table_id: str, metrics: list[dict[str, Any]], paper: dict[str, Any]
) -> tuple[dict[Key, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Assign runs to the paper rows of one table.

    Returns:
        ``(cells, unmatched)``: row key -> the metrics records of that row (every paper row is
        present, possibly empty), and the records whose key names no paper row.

    Raises:
        ValueError: when one row would mix runs of different configurations (anything but the
            seed differs) or holds the same seed twice. Merging them, or letting one overwrite
            the other, would publish a number that no single configuration produced.
    """
    spec = TABLES[table_id]
    cells: dict[Key, list[dict[str, Any]]] = {
        tuple(row[k] for k in spec.keys): [] for row in paper[table_id]["rows"]
    }
    unmatched = []
    for record in metrics:
        key = spec.row_key(record["run"])
        if key is None:
            continue
        if key not in cells:
            unmatched.append(record)
            log.warning("%s: run %s matches no paper row", table_id, record.get("path", key))
            continue
        cells[key].append(record)
    for key, records in cells.items():
        signatures = [_signature(r["run"]) for r in records]
        if any(s != signatures[0] for s in signatures):
            raise ValueError(
                f"{table_id} row {key} mixes configurations: {sorted(set(signatures))}"
            )
        seeds = [r["run"].get("seed") for r in records]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{table_id} row {key} has duplicate seeds {seeds}")
    return cells, unmatched


def build_table(
    table_id: str, metrics: list[dict[str, Any]], paper: dict[str, Any]
) -> list[dict[str, Any]]:
    """Rows of one table: paper rows in the paper's order, each with our summary beside it.

    Each row holds the key columns, then for every metric ``m``: ``m_ours_mean``,
    ``m_ours_std``, ``m_n``, ``m_paper_mean``, ``m_paper_std``, ``m_diff_paper_std``,
    ``m_verdict``. A run whose metric is null (e.g. no bpd) does not count towards that metric's
    ``n``. Unmatched runs are logged (``match_runs`` returns them).
    """
    return _build(table_id, metrics, paper)[0]


def _build(
    table_id: str, metrics: list[dict[str, Any]], paper: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``build_table``'s rows and ``match_runs``'s unmatched records, matching only once."""
    spec = TABLES[table_id]
    cells, unmatched = match_runs(table_id, metrics, paper)
    rows = []
    for paper_row in paper[table_id]["rows"]:
        row: dict[str, Any] = {k: paper_row[k] for k in spec.keys}
        records = cells[tuple(paper_row[k] for k in spec.keys)]
        for m in spec.metrics:
            src = METRICS[m].source
            values = [float(r[src]) for r in records if r.get(src) is not None]
            mean, std, n = summarise(values)
            p_mean, p_std = _paper_value(paper_row.get(m))
            row[f"{m}_ours_mean"] = mean
            row[f"{m}_ours_std"] = std
            row[f"{m}_n"] = n
            row[f"{m}_paper_mean"] = p_mean
            row[f"{m}_paper_std"] = p_std
            row[f"{m}_diff_paper_std"] = diff_in_paper_std(mean, p_mean, p_std)
            row[f"{m}_verdict"] = verdict(mean, std, n, p_mean, p_std, FLOORS[m])
        rows.append(row)
    return rows, unmatched


def _write_csv(rows: list[dict[str, Any]], out_csv: Path) -> None:
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def write_table(
    table_id: str,
    metrics_paths: list[Path],
    out_csv: Path,
    out_md: Path,
    paper_path: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Read ``metrics.json`` files, write one table as CSV and as Markdown, return its rows.

    The Markdown has the paper's caption, ours as ``mean ± std (n=k)`` beside the paper's
    ``mean ± std``, the difference in paper std, the verdict, a footnote with the verdict rule,
    the runs that matched no row, and a machine-readable verdict count for the report.
    """
    paper = load_paper_results(paper_path)
    metrics = load_metrics(metrics_paths)
    rows, unmatched = _build(table_id, metrics, paper)
    _write_csv(rows, Path(out_csv))
    md = format_table(
        table_id,
        rows,
        paper,
        unmatched=[str(r.get("path", r["run"])) for r in unmatched],
    )
    Path(out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(out_md).write_text(md, encoding="utf-8")
    return rows


def _pm(mean: float, std: float | None, decimals: int) -> str:
    return f"{mean:.{decimals}f}" + ("" if std is None else f" ± {std:.{decimals}f}")


def _cells(row: dict[str, Any], m: str) -> list[str]:
    """Ours, paper, difference in paper std and verdict of metric ``m`` as Markdown cells."""
    spec, n, diff = METRICS[m], row[f"{m}_n"], row[f"{m}_diff_paper_std"]
    ours = (
        "—"
        if n == 0
        else f"{_pm(row[f'{m}_ours_mean'], row[f'{m}_ours_std'], spec.decimals)} (n={n})"
    )
    p_mean = row[f"{m}_paper_mean"]
    paper = "—" if p_mean is None else _pm(p_mean, row[f"{m}_paper_std"], spec.paper_decimals)
    return [ours, paper, "—" if diff is None else f"{diff:+.2f}", row[f"{m}_verdict"]]


def format_table(
    table_id: str,
    rows: list[dict[str, Any]],
    paper: dict[str, Any],
    unmatched: list[str] | None = None,
) -> str:
    """Markdown of one table: caption, ours vs. paper per metric, verdict rule as footnote.

    Ends with an HTML comment ``<!-- scnf-verdicts: {...} -->`` holding the verdict counts,
    which ``scnf.report.report`` sums without re-parsing the table.
    """
    spec = TABLES[table_id]
    header = list(spec.keys)
    for m in spec.metrics:
        label = METRICS[m].label
        header += [f"{label} ours", f"{label} paper", "Δ / σ paper", f"{m} verdict"]
    caption = paper[table_id].get("caption", table_id)
    lines = [
        f"**Table {table_id.removeprefix('table')}.** {caption}: paper vs. this replication.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    counts = dict.fromkeys(VERDICTS, 0)
    for row in rows:
        cells = [("yes" if v else "no") if isinstance(v, bool) else str(v)
                 for v in (row[k] for k in spec.keys)]  # fmt: skip
        for m in spec.metrics:
            cells += _cells(row, m)
            counts[row[f"{m}_verdict"]] += 1
        lines.append("| " + " | ".join(cells) + " |")
    floors = "; ".join(f"{METRICS[m].label}: {FLOORS[m]:g} {METRICS[m].unit}" for m in spec.metrics)
    lines += [
        "",
        "Ours: mean ± sample std (ddof = 1) over n seeds (label splits); paper: mean ± std over 3 "
        "label splits as published. Δ / σ paper = (ours − paper) / paper std ('—' where the paper "
        "std is 0 or not given). Verdict: *reproduced* when the means agree within two standard "
        "errors, |ours − paper| ≤ 2·sqrt(σ_paper²/3 + σ_ours²/n + floor²), with an absolute "
        f"floor ({floors}) because some published std are "
        "0.0 or missing; *not reproduced* otherwise; *not run* when no run matches the row.",
    ]
    for note in (spec.note, paper[table_id].get("note", "")):
        if note:
            lines += ["", f"Note: {note}"]
    if unmatched:
        lines += ["", f"Runs that match no paper row ({len(unmatched)}), not shown:", ""]
        lines += [f"- `{u}`" for u in unmatched]
    lines += ["", f"<!-- {VERDICT_TAG}: {json.dumps(counts)} -->", ""]
    return "\n".join(lines)
