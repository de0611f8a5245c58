"""Presentation: paper-vs-measured tables, figures and the replication report.

Data flows one way: ``metrics.json`` (+ ``train_metrics.json``, ``train_log.jsonl``) into
``runs.csv`` / ``curves.csv`` (``runs``), those into the tables (``tables``, verdicts by
``verdict``), reconstruction ``.npz`` files into figures, and everything into ``REPORT.md``.
Nothing here trains or evaluates a model.
"""

from scnf.report.figures import plot_curves, plot_fig2, plot_toy
from scnf.report.report import count_verdicts, write_report
from scnf.report.runs import collect_curves, collect_runs, read_runs, write_runs
from scnf.report.tables import (
    TABLES,
    build_table,
    diff_in_paper_std,
    format_table,
    load_paper_results,
    match_runs,
    summarise,
    write_table,
)
from scnf.report.verdict import FLOORS, VERDICTS, verdict

__all__ = [
    "FLOORS",
    "TABLES",
    "VERDICTS",
    "build_table",
    "collect_curves",
    "collect_runs",
    "count_verdicts",
    "diff_in_paper_std",
    "format_table",
    "load_paper_results",
    "match_runs",
    "plot_curves",
    "plot_fig2",
    "plot_toy",
    "read_runs",
    "summarise",
    "verdict",
    "write_report",
    "write_runs",
    "write_table",
]
