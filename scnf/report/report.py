"""REPORT.md: the replication's tables and figures beside the paper's, with their provenance.

The report only assembles artefacts that earlier steps wrote (table Markdown from
``scnf.report.tables.write_table``, PNGs from ``scnf.report.figures``); it computes nothing, so a
number in it can always be traced to a file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from scnf.report.tables import VERDICT_TAG, VERDICTS

__all__ = ["count_verdicts", "write_report"]

_TAG_RE = re.compile(r"<!--\s*" + re.escape(VERDICT_TAG) + r":\s*(\{.*?\})\s*-->")


def count_verdicts(markdown: str) -> dict[str, int]:
    """Verdict counts of one table's Markdown.

    Reads the ``scnf-verdicts`` comment that ``write_table`` appends; for Markdown without it,
    counts table cells that are exactly a verdict.
    """
    counts = dict.fromkeys(VERDICTS, 0)
    match = _TAG_RE.search(markdown)
    if match:
        for key, value in json.loads(match.group(1)).items():
            counts[key] = counts.get(key, 0) + int(value)
        return counts
    for line in markdown.splitlines():
        if line.startswith("|"):
            for cell in line.strip().strip("|").split("|"):
                if cell.strip() in counts:
                    counts[cell.strip()] += 1
    return counts


def _relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` with forward slashes, as Markdown links want."""
    try:
        rel = os.path.relpath(Path(path).resolve(), start.resolve())
    except ValueError:  # different drives on Windows
        rel = str(Path(path).resolve())
    return Path(rel).as_posix()


def _hardware(prov: dict[str, Any]) -> str:
    device = prov.get("device") or "unknown device"
    cap = prov.get("cuda_capability")
    gpu = f"{device} (compute capability {cap})" if cap else str(device)
    return f"{gpu}; {prov.get('cpu_count', '?')} CPU cores on {prov.get('hostname', '?')}"


def _commit(prov: dict[str, Any]) -> str:
    commit = prov.get("commit")
    if not commit:
        return "unknown (not a git checkout)"
    return f"`{commit}`" + (" (uncommitted changes)" if prov.get("dirty") else "")


def _timings_md(timings: dict[str, float]) -> list[str]:
    lines = ["## Wall times", "", "| step | wall time (s) |", "|---|---|"]
    for name, seconds in sorted(timings.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {seconds:.1f} |")
    lines.append(f"| **total** | **{sum(timings.values()):.1f}** |")
    return lines + [""]


def write_report(
    out_md: Path,
    config_name: str,
    tables: dict[str, Path],
    figures: dict[str, Path],
    provenance: dict[str, Any],
    timings: dict[str, float] | None = None,
) -> None:
    """Write REPORT.md.

    Sections: title; how it was produced (config, commit, hardware, date); a verdict summary;
    each table's Markdown inlined (paper values beside ours); figures embedded by paths relative
    to ``out_md``'s directory; provenance details; optional per-step wall times.

    Args:
        out_md: the report path.
        config_name: name of the workflow config (e.g. ``"quick"``).
        tables: table id -> Markdown written by ``write_table``, in display order.
        figures: caption -> PNG path, in display order.
        provenance: ``scnf.provenance.collect()`` of the report step.
        timings: optional step name -> wall time in seconds.
    """
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    table_text = {tid: Path(p).read_text(encoding="utf-8").strip() for tid, p in tables.items()}
    per_table = {tid: count_verdicts(text) for tid, text in table_text.items()}
    total = {v: sum(c.get(v, 0) for c in per_table.values()) for v in VERDICTS}

    lines = [
        "# Semi-Conditional Normalizing Flows: replication report",
        "",
        "Replication of Atanov et al., *Semi-Conditional Normalizing Flows for Semi-Supervised "
        "Learning* (INNF workshop, ICML 2019; arXiv:1905.00505).",
        "",
        "## How this report was produced",
        "",
        f"- config: `{config_name}`",
        f"- commit: {_commit(provenance)}",
        f"- hardware of the report step: {_hardware(provenance)}"
        " (each run's own is in its metrics.json)",
        f"- date (UTC): {provenance.get('timestamp_utc', 'unknown')}",
        "",
        "## Summary",
        "",
        "Verdicts per (row, metric) cell; the rule is in each table's footnote.",
        "",
        "| table | " + " | ".join(VERDICTS) + " |",
        "|---|" + "---|" * len(VERDICTS),
    ]
    for tid, counts in per_table.items():
        lines.append(f"| {tid} | " + " | ".join(str(counts.get(v, 0)) for v in VERDICTS) + " |")
    lines += ["| **all** | " + " | ".join(f"**{total[v]}**" for v in VERDICTS) + " |", ""]

    lines += ["## Tables", ""]
    for tid, text in table_text.items():
        lines += [f"### {tid}", "", text, ""]

    if figures:
        lines += ["## Figures", ""]
        for caption, png in figures.items():
            lines += [
                f"![{caption}]({_relative(Path(png), out_md.parent)})",
                "",
                f"*{caption}*",
                "",
            ]

    lines += [
        "## Provenance",
        "",
        "```json",
        json.dumps(provenance, indent=2, default=str),
        "```",
        "",
    ]
    if timings:
        lines += _timings_md(timings)
    out_md.write_text("\n".join(lines), encoding="utf-8")
