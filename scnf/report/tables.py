"""Paper-vs-measured tables: Tables 1-3 of Atanov et al. (2019) beside this replication.

Input: ``runs.csv`` (``scnf.report.runs``), one row per run. Each table maps a run to at most
one paper row by an explicit key function; the runs of one row must share one configuration
(every identity column of ``runs.identity_columns`` but the seed: model sizes, training
settings, data sizes, mode, L_clf weight, z_f), otherwise the table refuses, naming the keys
that differ, rather than average different protocols. Ours: mean and sample std (ddof = 1)
over seeds; the verdict per cell is ``scnf.report.verdict.verdict``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from scnf.report.runs import IDENTITY_PREFIX, identity_columns, read_runs
from scnf.report.verdict import FLOORS, NO_PAPER_VALUE, VERDICTS, verdict

__all__ = [
    "FLOORS",
    "METRICS",
    "TABLES",
    "VERDICTS",
    "build_table",
    "diff_in_paper_std",
    "format_table",
    "load_paper_results",
    "match_runs",
    "summarise",
    "write_table",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    """A compared metric: its ``runs.csv`` column, label, unit and printed decimals."""

    source: str
    label: str
    unit: str
    decimals: int  # ours
    paper_decimals: int  # as the paper prints it


_ERR = {"unit": "percentage points", "decimals": 2, "paper_decimals": 1}
METRICS: dict[str, Metric] = {
    "error": Metric("test_error", label="test error (%)", **_ERR),
    "test_error": Metric("test_error", label="test error (%)", **_ERR),
    "train_error": Metric("train_error", label="train error (%)", **_ERR),
    "nll": Metric("test_nll", "NLL (nats)", "nats", 3, 2),
    "bpd": Metric("test_bpd", "bits/dim", "bits/dim", 4, 3),
}
VERDICT_TAG = "scnf-verdicts"  # HTML comment in the Markdown that the report counts
TABLE2_ZF_DIM = 196  # the paper's MNIST setting; other z_f sizes belong to Table 3 only
_TABLE2_MODEL = {"mnist-glow": "scnf-glow", "mnist-gmm": "scnf-gmm"}
_BASELINES = ("kingma2014-m1m2", "kingma2014-m2")  # presets of the measured VAE baselines
# The authors' schedule for their semi-supervised MNIST models: Kingma et al. (2014), code at
# github.com/dpkingma/nips14-ssl (run_2layer_ssl.py trains M1+M2 with n_passes = 3000; its
# README: "Each experiment will run for 3000 epochs"). A measured baseline trained for fewer
# epochs carries a caveat in Table 2 and in the report.
KINGMA2014_EPOCHS = 3000

Key = tuple[Any, ...]


@dataclass(frozen=True)
class TableSpec:
    """How one paper table is keyed.

    Attributes:
        keys: the paper row's key columns, in order.
        metrics: the compared metrics, in order.
        row_key: run (a ``runs.csv`` row as a dict) -> its row key, or None when the run is
            not meant for this table. A key that names no paper row is an unmatched run and
            is reported, never dropped silently.
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
    if run.get("dataset") != "mnist":
        return None
    if run.get("preset") in _BASELINES:
        return (run["preset"], "vi", True)
    model = _TABLE2_MODEL.get(run.get("preset", ""))
    if model is None or int(run.get("zf_dim") or 0) != TABLE2_ZF_DIM:
        return None
    return (model, run["mode"], float(run["clf_weight"]) > 0.0)


def _table3_key(run: dict[str, Any]) -> Key | None:
    if (
        run.get("dataset") != "mnist"
        or run.get("preset") != "mnist-glow"
        or run.get("mode") != "sgd"
        or float(run.get("clf_weight") or 0.0) != 0.0
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
        f"{TABLE2_ZF_DIM}; clf_loss = clf_weight > 0. kingma2014-m1m2 is the baseline the paper "
        "cites (Kingma et al., 2014, M1+M2); kingma2014-m2 (M2 alone, 11.97 ± 1.71 in their "
        "Table 1) is added here; both are measured by `scnf.baselines` on the same splits.",
    ),
    "table3": TableSpec(
        ("zf_dim",),
        ("test_error", "train_error"),
        _table3_key,
        note="Runs: preset mnist-glow, SGD, no L_clf. The paper gives no std for this table.",
    ),
}


def load_paper_results(path: str | Path | None = None) -> dict[str, Any]:
    """Published numbers (``paper_results.yaml``); the copy shipped in the package by default."""
    if path is None:
        text = resources.files("scnf.report").joinpath("paper_results.yaml").read_text("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def summarise(values: list[float]) -> tuple[float | None, float | None, int]:
    """Mean, sample std (ddof = 1; 0.0 for one value) and count; ``(None, None, 0)`` if empty."""
    s = pd.Series(values, dtype=float)
    if s.empty:
        return None, None, 0
    return float(s.mean()), float(s.std(ddof=1)) if len(s) > 1 else 0.0, len(s)


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


def _as_frame(runs: pd.DataFrame | list[dict[str, Any]]) -> pd.DataFrame:
    return runs if isinstance(runs, pd.DataFrame) else pd.DataFrame(list(runs))


def match_runs(
    table_id: str, runs: pd.DataFrame | list[dict[str, Any]], paper: dict[str, Any]
) -> tuple[dict[Key, pd.DataFrame], pd.DataFrame]:
    """Assign runs to the paper rows of one table.

    Returns:
        ``(cells, unmatched)``: row key -> the runs of that row (every paper row is present,
        possibly empty), and the runs whose key names no paper row.

    Raises:
        ValueError: when one row would mix configurations (naming the identity columns that
            differ) or holds the same seed twice. Averaging them would publish a number that no
            single configuration produced.
    """
    spec = TABLES[table_id]
    frame = _as_frame(runs).reset_index(drop=True)
    keys = [spec.row_key(r) for r in frame.to_dict("records")]
    wanted = {tuple(row[k] for k in spec.keys) for row in paper[table_id]["rows"]}
    mine = pd.Series([k is not None for k in keys], dtype=bool)
    named = pd.Series([k in wanted for k in keys], dtype=bool)
    unmatched = frame[mine & ~named]
    for path in unmatched.get("path", pd.Series(dtype=object)):
        log.warning("%s: run %s matches no paper row", table_id, path)
    ident = identity_columns(frame)
    cells = {}
    for row in paper[table_id]["rows"]:
        key = tuple(row[k] for k in spec.keys)
        group = frame[[k == key for k in keys]] if len(frame) else frame
        differing = [c for c in ident if _as_text(group[c]).nunique() > 1]
        if differing:
            raise ValueError(
                f"{table_id} row {key} mixes configurations that differ in {differing}; "
                "give each protocol its own config name (results/<name>/)"
            )
        seeds = list(group["seed"]) if len(group) else []
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{table_id} row {key} has duplicate seeds {seeds}")
        cells[key] = group
    return cells, unmatched


def _as_text(column: pd.Series) -> pd.Series:
    """Values as comparable text, missing ones as "None" (so None vs 500 is a difference)."""
    return column.map(lambda v: "None" if v is None or v != v else str(v))


def _protocol_id(group: pd.DataFrame) -> str | None:
    """Short hash of a row's protocol (its ``protocol.*`` columns), or None for an empty row.

    Rows trained with the same settings share an id, so the footnote lists each protocol once.
    Empty settings are left out of the hash, so a run's id does not depend on which other
    families' columns share its ``runs.csv``.
    """
    if group.empty:
        return None
    cols = [c for c in identity_columns(group) if c.startswith(IDENTITY_PREFIX)]
    first = group.iloc[0]
    ident = {c: str(first[c]) for c in cols if not _missing(first[c])}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]


def build_table(
    table_id: str, runs: pd.DataFrame | list[dict[str, Any]], paper: dict[str, Any]
) -> list[dict[str, Any]]:
    """Rows of one table: paper rows in the paper's order, each with our summary beside it.

    Each row holds the key columns, ``protocol_id``, then for every metric ``m``:
    ``m_ours_mean``, ``m_ours_std``, ``m_n``, ``m_paper_mean``, ``m_paper_std``,
    ``m_diff_paper_std``, ``m_verdict``. A run whose metric is empty (e.g. no bpd) does not
    count towards that metric's ``n``.
    """
    return _build(table_id, runs, paper)[0]


def _build(
    table_id: str,
    runs: pd.DataFrame | list[dict[str, Any]],
    paper: dict[str, Any],
    limits: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], pd.DataFrame, dict[str, pd.Series]]:
    """Rows, unmatched runs and the configuration behind each protocol id, matching once.

    ``limits`` (Table 1 only): ``scnf toy-limits``'s JSON, dataset -> the data's entropy and
    Bayes error, added to each row as ``limit_*`` columns.
    """
    spec = TABLES[table_id]
    cells, unmatched = match_runs(table_id, runs, paper)
    rows, protocols = [], {}
    for paper_row in paper[table_id]["rows"]:
        group = cells[tuple(paper_row[k] for k in spec.keys)]
        row: dict[str, Any] = {k: paper_row[k] for k in spec.keys}
        row["protocol_id"] = _protocol_id(group)
        if row["protocol_id"]:
            protocols[row["protocol_id"]] = group.iloc[0]
        by_seed = group.sort_values("seed") if len(group) else group
        for m in spec.metrics:
            col = METRICS[m].source
            present = by_seed[by_seed[col].notna()] if col in by_seed else by_seed.iloc[0:0]
            values = present[col].astype(float) if len(present) else pd.Series([], dtype=float)
            mean, std, n = summarise(list(values))
            # Every seed's value beside the mean: a spread hides which split failed.
            row[f"{m}_values"] = [float(v) for v in values]
            row[f"{m}_seeds"] = [int(v) for v in present["seed"]] if len(present) else []
            p_mean, p_std = _paper_value(paper_row.get(m))
            row[f"{m}_ours_mean"] = mean
            row[f"{m}_ours_std"] = std
            row[f"{m}_n"] = n
            row[f"{m}_paper_mean"] = p_mean
            row[f"{m}_paper_std"] = p_std
            row[f"{m}_diff_paper_std"] = diff_in_paper_std(mean, p_mean, p_std)
            row[f"{m}_verdict"] = verdict(mean, std, n, p_mean, p_std, FLOORS[m])
        row["caveat"] = _schedule_caveat(paper_row, group)
        if limits is not None:
            lim = limits[paper_row["dataset"]]
            row["limit_error"], row["limit_error_se"] = (
                lim["bayes_error_pct"],
                lim["bayes_error_se"],
            )
            row["limit_nll"], row["limit_nll_se"] = lim["entropy_nats"], lim["entropy_se"]
        rows.append(row)
    return rows, unmatched, protocols


def _schedule_caveat(paper_row: dict[str, Any], group: pd.DataFrame) -> str | None:
    """A measured Kingma et al. baseline trained for fewer epochs than the authors' schedule
    (``KINGMA2014_EPOCHS``): the sentence that says so, read from the runs' own protocol."""
    model = paper_row.get("model")
    column = IDENTITY_PREFIX + "train.epochs"
    if model not in _BASELINES or group.empty or column not in group:
        return None
    epochs = sorted({int(e) for e in group[column].dropna()})
    if not epochs or max(epochs) >= KINGMA2014_EPOCHS:
        return None
    shown = "/".join(f"{e:,}" for e in epochs)
    pct = 100.0 * max(epochs) / KINGMA2014_EPOCHS
    return (
        f"{model} was stopped at {shown} of the authors' {KINGMA2014_EPOCHS:,} epochs "
        f"({pct:.{0 if pct >= 10 else 1}f} % of their schedule; Kingma et al. 2014, "
        "github.com/dpkingma/nips14-ssl): its error is that of a shorter training, not of "
        "their model."
    )


def write_table(
    table_id: str,
    runs_csv: str | Path,
    out_csv: Path,
    out_md: Path,
    paper_path: str | Path | None = None,
    protocol: dict[str, Any] | None = None,
    config_name: str = "",
    limits_path: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Read ``runs.csv``, write one table as CSV and as Markdown, return its rows.

    ``limits_path`` (Table 1): ``scnf toy-limits``'s JSON; its entropy and Bayes error become
    columns beside the paper's values.

    ``protocol`` is the workflow config's ``protocol`` block (``follows_paper``,
    ``description``); a config that does not follow the paper gets a banner in the Markdown's
    first lines and its verdicts are tagged so that the report does not count them as
    reproductions.
    """
    paper = load_paper_results(paper_path)
    limits = json.loads(Path(limits_path).read_text()) if limits_path else None
    rows, unmatched, protocols = _build(table_id, read_runs(runs_csv), paper, limits)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out_csv, index=False)
    md = format_table(
        table_id,
        rows,
        paper,
        unmatched=[str(p) for p in unmatched.get("path", [])],
        protocols=protocols,
        protocol=protocol,
        config_name=config_name,
    )
    Path(out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(out_md).write_text(md, encoding="utf-8")
    return rows


def _pm(mean: float, std: float | None, decimals: int) -> str:
    return f"{mean:.{decimals}f}" + ("" if std is None else f" ± {std:.{decimals}f}")


def _cells(row: dict[str, Any], m: str) -> list[str]:
    """Ours, paper, difference in paper std and verdict of metric ``m`` as Markdown cells."""
    spec, n, diff = METRICS[m], row[f"{m}_n"], row[f"{m}_diff_paper_std"]
    ours = "—"
    if n:
        each = ", ".join(f"{v:.{spec.decimals}f}" for v in row.get(f"{m}_values") or [])
        mean = _pm(row[f"{m}_ours_mean"], row[f"{m}_ours_std"], spec.decimals)
        ours = f"{mean} (n={n}: {each})" if each else f"{mean} (n={n})"
    p_mean = row[f"{m}_paper_mean"]
    paper = "—" if p_mean is None else _pm(p_mean, row[f"{m}_paper_std"], spec.paper_decimals)
    return [ours, paper, "—" if diff is None else f"{diff:+.2f}", row[f"{m}_verdict"]]


def _protocol_lines(protocols: dict[str, pd.Series], in_columns: tuple[str, ...] = ()) -> list[str]:
    """One line per protocol id: the data sizes and training settings its runs used, and the
    model options in which the table's protocols differ from each other. ``in_columns``: the
    protocol keys the table already shows as columns (Table 2's optimisation and L_clf)."""
    runs = list(protocols.values())
    cols = [str(c) for c in runs[0].index if str(c).startswith(IDENTITY_PREFIX)] if runs else []
    varying = {
        c for c in cols
        if c.startswith(IDENTITY_PREFIX + "model.") and len({str(r.get(c)) for r in runs}) > 1
    }  # fmt: skip
    lines = []
    for pid, run in protocols.items():
        settings = []
        for col in cols:
            key, value = col.removeprefix(IDENTITY_PREFIX), run.get(col)
            shown = key.startswith(("train.", "data.")) or col in varying
            # An empty cell is a key this run does not have (another family's setting in a
            # shared runs.csv); a key set to null is the text "null" (see runs.run_row).
            if not shown or key in in_columns or _missing(value):
                continue
            if value == "null" and key.startswith("data."):
                value = "all"
            settings.append(f"{key.split('.', 1)[1]}={value}")
        lines.append(f"- `{pid}`: {', '.join(settings) or 'no protocol recorded'}")
    return lines


def _missing(value: Any) -> bool:
    """None, or the NaN that pandas writes for a setting a run does not have."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def banner(protocol: dict[str, Any] | None, config_name: str = "") -> list[str]:
    """The first lines of a table or report whose config does not follow the paper's protocol."""
    if protocol is None or protocol.get("follows_paper", False):
        return []
    name = f" `{config_name}`" if config_name else ""
    return [
        f"> **Not the paper's protocol.** Config{name}: {protocol.get('description', '')} Its "
        "verdicts compare a reduced run with the published numbers; none of them is a "
        "reproduction of the paper.",
        "",
    ]


def format_table(
    table_id: str,
    rows: list[dict[str, Any]],
    paper: dict[str, Any],
    unmatched: list[str] | None = None,
    protocols: dict[str, pd.Series] | None = None,
    protocol: dict[str, Any] | None = None,
    config_name: str = "",
) -> str:
    """Markdown of one table: banner, caption, ours vs. paper per metric, rule as footnote.

    Ends with an HTML comment ``<!-- scnf-verdicts: {...} -->`` holding the verdict counts,
    whether the config follows the paper, the number of rows, the rows with no run at all and
    the caveats, which ``scnf.report.report`` sums and puts first.
    """
    spec = TABLES[table_id]
    header = list(spec.keys)
    for m in spec.metrics:
        label = METRICS[m].label
        header += [f"{label} ours", f"{label} paper", "Δ / σ paper", f"{m} verdict"]
    with_limits = bool(rows) and "limit_error" in rows[0]
    if with_limits:
        header += ["limit: Bayes error (%)", "limit: entropy (nats)"]
    header.append("protocol")
    caption = paper[table_id].get("caption", table_id)
    lines = banner(protocol, config_name) + [
        f"**Table {table_id.removeprefix('table')}.** {caption}: paper vs. this replication.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    counts = dict.fromkeys(VERDICTS, 0)
    not_run = []
    for row in rows:
        cells = [("yes" if v else "no") if isinstance(v, bool) else str(v)
                 for v in (row[k] for k in spec.keys)]  # fmt: skip
        for m in spec.metrics:
            cells += _cells(row, m)
            if row[f"{m}_verdict"] in counts:  # NO_PAPER_VALUE cells are not verdicts
                counts[row[f"{m}_verdict"]] += 1
        if with_limits:
            cells += [f"{row['limit_error']:.3f} ± {row['limit_error_se']:.3f}",
                      f"{row['limit_nll']:.3f} ± {row['limit_nll_se']:.3f}"]  # fmt: skip
        cells.append(f"`{row['protocol_id']}`" if row.get("protocol_id") else "—")
        lines.append("| " + " | ".join(cells) + " |")
        verdicts = {row[f"{m}_verdict"] for m in spec.metrics} - {NO_PAPER_VALUE}
        if verdicts == {"not run"}:
            not_run.append(" / ".join(cells[: len(spec.keys)]))
    floors = "; ".join(f"{METRICS[m].label}: {FLOORS[m]:g} {METRICS[m].unit}" for m in spec.metrics)
    lines += [
        "",
        "Ours: mean ± sample std (ddof = 1) over n seeds (label splits), then each seed's value "
        "in seed order; paper: mean ± std over 3 label splits as published. Δ / σ paper = "
        "(ours − paper) / paper std ('—' where the paper std is 0 or not given). Lower is "
        "better for every metric. Verdict, from the 90 % Welch "
        "interval [lo, hi] of ours − paper (standard errors σ_ours²/n + σ_paper²/3): *better* "
        "when hi < −floor, *worse* when lo > floor (significant at 5 % one-sided, by more than "
        f"the floor: {floors}); otherwise *reproduced* when the interval is at most "
        "4·max(σ_paper, floor) wide, *inconclusive* when it is wider or ours has fewer than 2 "
        "seeds; *not run* when no run matches the row"
        + (
            "; *n/a* where the paper publishes no value (nothing to compare, not counted)."
            if any(row[f"{m}_verdict"] == NO_PAPER_VALUE for row in rows for m in spec.metrics)
            else "."
        ),
    ]
    if with_limits:
        lines += [
            "",
            "Limits: the lowest test error (the Bayes classifier's) and the lowest test NLL (the "
            "differential entropy of the data distribution) that any model can reach on these "
            "generators, by Monte Carlo over the exact mixture density (± standard error; "
            "`scnf toy-limits`, `scnf/data/toy_limits.py`).",
        ]
    if protocols:
        lines += ["", "Protocols (the runs of a row share every setting but the seed):", ""]
        in_columns = ("train.mode", "train.clf_weight") if "optimisation" in spec.keys else ()
        lines += _protocol_lines(protocols, in_columns)
    for note in (spec.note, paper[table_id].get("note", "")):
        if note:
            lines += ["", f"Note: {note}"]
    caveats = [row["caveat"] for row in rows if row.get("caveat")]
    for caveat in caveats:
        lines += ["", f"**Caveat:** {caveat}"]
    if unmatched:
        lines += ["", f"Runs that match no paper row ({len(unmatched)}), not shown:", ""]
        lines += [f"- `{u}`" for u in unmatched]
    follows = bool(protocol and protocol.get("follows_paper", False))  # unknown: not counted
    tag = {"counts": counts, "follows_paper": follows, "rows": len(rows), "not_run": not_run,
           "caveats": caveats}  # fmt: skip
    lines += ["", f"<!-- {VERDICT_TAG}: {json.dumps(tag)} -->", ""]
    return "\n".join(lines)
