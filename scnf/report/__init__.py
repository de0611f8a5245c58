"""Presentation: paper-vs-measured tables, figures and the replication report.

Data flows one way: ``metrics.json`` and reconstruction ``.npz`` files in, CSV / Markdown / PNG
and ``REPORT.md`` out. Nothing here trains or evaluates a model.
"""

from scnf.report.figures import plot_fig2, plot_toy
from scnf.report.report import count_verdicts, write_report
from scnf.report.tables import (
    FLOORS,
    TABLES,
    VERDICTS,
    build_table,
    diff_in_paper_std,
    format_table,
    load_metrics,
    load_paper_results,
    match_runs,
    summarise,
    verdict,
    write_table,
)

__all__ = [
    "FLOORS",
    "TABLES",
    "VERDICTS",
    "build_table",
    "count_verdicts",
    "diff_in_paper_std",
    "format_table",
    "load_metrics",
    "load_paper_results",
    "match_runs",
    "plot_fig2",
    "plot_toy",
    "summarise",
    "verdict",
    "write_report",
    "write_table",
]
