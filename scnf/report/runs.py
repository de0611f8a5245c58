"""One tidy record per run: ``runs.csv``, the single input of the tables, and ``curves.csv``.

``runs.csv`` has one row per training run, gathered from its ``metrics.json`` (the test set,
scored once by ``scnf evaluate``) and the ``train_metrics.json`` beside it (training time,
final monitors). Columns: the paper's row keys (``RUN_KEYS``), the run's protocol as
``protocol.<section>.<key>`` (``scnf.evaluate.run_protocol``: everything but the seed that
changes the result), every measured metric, wall times, the commit, and the path. It is what
a researcher loads for their own analysis::

    runs = pandas.read_csv("results/paper/runs.csv")

``curves.csv`` is the long form of every run's monitored metrics (``train_log.jsonl``): one
row per (run, logged epoch) with the step and every ``mon_*`` value. Neither file holds a
number that the runs did not write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "IDENTITY_PREFIX",
    "RUN_KEYS",
    "collect_curves",
    "collect_runs",
    "identity_columns",
    "read_runs",
    "training_cost",
    "write_runs",
]

RUN_KEYS: tuple[str, ...] = ("dataset", "preset", "f", "h", "mode", "clf_weight", "zf_dim", "seed")
IDENTITY_PREFIX = "protocol."
METRICS: tuple[str, ...] = (
    "test_error",
    "train_error",
    "test_nll",
    "test_bpd",
    "num_test",
    "num_labelled",
)
TRAIN_LOG = "train_log.jsonl"
TRAIN_METRICS = "train_metrics.json"


def _cell(value: Any) -> Any:
    """A CSV-safe scalar: lists and mappings as compact JSON text."""
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return value


def run_row(record: dict[str, Any], train: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``runs.csv`` row of one ``metrics.json`` record (and its ``train_metrics.json``)."""
    run = record["run"]
    row: dict[str, Any] = {k: run.get(k) for k in RUN_KEYS}
    for key, value in sorted((run.get("protocol") or {}).items()):
        # A null setting is the text "null"; an empty cell means the run has no such key.
        row[IDENTITY_PREFIX + key] = "null" if value is None else _cell(value)
    for key in METRICS:
        row[key] = record.get(key)
    train = train or {}
    row["steps"] = train.get("steps")
    row["train_wall_s"] = train.get("train_wall_s")
    # Process CPU seconds of training, summed over every attempt of a resumed run (absent from
    # runs trained before it was recorded).
    row["train_cpu_s"] = train.get("train_cpu_s")
    for key, value in sorted(train.items()):
        if key.startswith("mon_"):
            row[f"final_{key}"] = _cell(value)
    prov = record.get("provenance") or {}
    row["eval_wall_s"] = prov.get("wall_time_s")
    row["commit"] = prov.get("commit")
    row["dirty"] = prov.get("dirty")
    row["path"] = str(record.get("path", ""))
    return row


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def collect_runs(metrics_paths: Iterable[str | Path]) -> pd.DataFrame:
    """``runs.csv`` as a DataFrame, one row per ``metrics.json`` path, in the order given."""
    rows = []
    for p in metrics_paths:
        p = Path(p)
        record = _read_json(p)
        record.setdefault("path", str(p))
        train_path = p.parent / TRAIN_METRICS
        rows.append(run_row(record, _read_json(train_path) if train_path.is_file() else None))
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=[*RUN_KEYS, *METRICS, "path"])
    # Settings keep their type where another family's runs leave the column empty (256, not
    # 256.0, in the CSV).
    settings = [c for c in frame.columns if c.startswith(IDENTITY_PREFIX)]
    frame[settings] = pd.DataFrame({c: [r.get(c) for r in rows] for c in settings}, dtype=object)
    return frame


def write_runs(metrics_paths: Iterable[str | Path], out_csv: str | Path) -> pd.DataFrame:
    """Collect the runs and write ``runs.csv``; return the frame."""
    frame = collect_runs(metrics_paths)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_csv, index=False)
    return frame


def read_runs(path: str | Path) -> pd.DataFrame:
    """Read ``runs.csv`` back (empty cells become None).

    ``protocol.*`` settings are parsed cell by cell, so an integer setting stays an integer
    (``256``, not ``256.0``) even where another family's runs leave its column empty.
    """
    header = pd.read_csv(path, nrows=0).columns
    text = {c: "object" for c in header if c.startswith(IDENTITY_PREFIX)}
    # Only an empty cell is missing: a null setting is the text "null" (see run_row).
    frame = pd.read_csv(
        path,
        dtype={k: "object" for k in ("dataset", "preset", "f", "h")} | text,
        keep_default_na=False,
        na_values=[""],
    )
    frame = frame.astype(object).where(frame.notna(), None)
    for col in text:
        frame[col] = pd.Series([_setting(v) for v in frame[col]], index=frame.index, dtype=object)
    return frame


def _setting(cell: str | None) -> Any:
    """A protocol cell as written: int, else float, else the text itself (None stays None)."""
    if cell is None:
        return None
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


def identity_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that identify a configuration: every row key but the seed, and the protocol."""
    keys = [k for k in RUN_KEYS if k != "seed" and k in frame.columns]
    return keys + sorted(c for c in frame.columns if c.startswith(IDENTITY_PREFIX))


def collect_curves(metrics_paths: Iterable[str | Path]) -> pd.DataFrame:
    """Long table of monitored metrics: run keys, ``variant``, ``epoch``, ``step``, ``mon_*``.

    Reads the ``train_log.jsonl`` beside each ``metrics.json``; epochs without monitors are
    dropped, runs without a log contribute nothing.
    """
    rows = []
    for p in metrics_paths:
        p = Path(p)
        log_path = p.parent / TRAIN_LOG
        if not log_path.is_file():
            continue
        run = _read_json(p)["run"]
        base = {k: run.get(k) for k in RUN_KEYS}
        base["variant"] = p.parent.parent.name
        for line in log_path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            mons = {k: v for k, v in entry.items() if k.startswith("mon_") and v is not None}
            if mons:
                rows.append({**base, "epoch": entry.get("epoch"), "step": entry["step"], **mons})
    return pd.DataFrame(rows)


def run_group(path: str) -> str:
    """The run folder a ``metrics.json`` path belongs to, seeds pooled: ``mnist/glow-sgd-zf196``
    for ``.../runs/mnist/glow-sgd-zf196/seed0/metrics.json``, ``baseline/m1`` for
    ``.../runs/baseline/m1/metrics.json``."""
    parts = Path(path).parts[:-1]
    if "runs" in parts:
        parts = parts[len(parts) - parts[::-1].index("runs") :]
    if parts and parts[-1].startswith("seed"):
        parts = parts[:-1]
    return "/".join(parts)


def training_cost(frame: pd.DataFrame) -> pd.DataFrame:
    """Training time per run group (seeds pooled), from ``runs.csv``'s per-run columns.

    Columns: ``group``, ``runs``, ``train_cpu_s`` (summed over the runs that recorded it; None
    when none did), ``cpu_recorded`` (how many did), ``train_wall_s`` (summed likewise) and
    ``wall_recorded``. The CPU seconds count every attempt of a resumed run, where Snakemake's
    job benchmarks count only the last attempt.
    """
    rows = []
    if frame.empty:
        return pd.DataFrame(rows)
    groups = frame["path"].map(run_group)
    for group, part in frame.groupby(groups, sort=False):
        row: dict[str, Any] = {"group": group, "runs": len(part)}
        for col, count in (("train_cpu_s", "cpu_recorded"), ("train_wall_s", "wall_recorded")):
            values = [float(v) for v in part.get(col, []) if v is not None and v == v]
            row[col] = sum(values) if values else None
            row[count] = len(values)
        rows.append(row)
    return pd.DataFrame(rows)
