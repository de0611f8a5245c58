"""REPORT.md: the replication's tables and figures beside the paper's, with their provenance.

The report assembles artefacts that earlier steps wrote (table Markdown from
``scnf.report.tables.write_table``, PNGs from ``scnf.report.figures``, the claims). The only
figures it derives are the training-cost sums, and those from ``runs.csv``
(``scnf.report.runs.training_cost``), so a number in it can always be traced to a file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from scnf.report.claims import CLAIM_VERDICTS, read_claims_tag
from scnf.report.tables import VERDICT_TAG, banner
from scnf.report.verdict import VERDICTS

__all__ = ["count_verdicts", "read_tag", "write_report"]

_TAG_RE = re.compile(r"<!--\s*" + re.escape(VERDICT_TAG) + r":\s*(\{.*?\})\s*-->")


def read_tag(markdown: str) -> dict[str, Any]:
    """The ``scnf-verdicts`` comment that ``write_table`` appends to a table, as a dict (empty
    for a table without one)."""
    match = _TAG_RE.search(markdown)
    return json.loads(match.group(1)) if match else {}


def count_verdicts(markdown: str) -> tuple[dict[str, int], bool]:
    """Verdict counts of one table's Markdown, and whether its config follows the paper.

    Reads the ``scnf-verdicts`` comment that ``write_table`` appends. A table without it (not
    written by ``write_table``) counts as not following the paper, with no verdicts.
    """
    counts = dict.fromkeys(VERDICTS, 0)
    tag = read_tag(markdown)
    for key, value in tag.get("counts", {}).items():
        counts[key] = counts.get(key, 0) + int(value)
    return counts, bool(tag.get("follows_paper", False))


# What each table (and Fig. 2) stands for in the paper: named first when no run backs it.
WHAT_IT_SHOWS = {
    "table1": "SCNF on two 2-D toy problems with 10 labels",
    "table2": "SCNF on MNIST with 100 labels against Kingma et al.'s M1+M2: the paper's main claim",
    "table3": "the effect of the size of z_f on MNIST",
    "fig2": "reconstructions from z_f alone",
}


def _at_a_glance(
    per_table: dict[str, dict[str, Any]],
    figures: dict[str, Path],
    follows: bool,
    claims: dict[str, str] | None = None,
) -> list[str]:
    """The report's first lines: what has no evidence yet, what was measured (better counted
    apart from reproduced), and the caveats the tables carry. All read from the tables' tags."""
    untested = []
    for tid, tag in per_table.items():
        rows, missing = int(tag.get("rows", 0)), list(tag.get("not_run", []))
        if not missing:
            continue
        which = (
            f"all {rows} rows"
            if len(missing) == rows
            else (f"{len(missing)} of {rows} rows: " + "; ".join(missing))
        )
        untested.append(f"  - {tid} ({WHAT_IT_SHOWS.get(tid, tid)}): {which}")
    table3_untested = "table3" in per_table and per_table["table3"].get("not_run")
    if table3_untested and not any(c.startswith("Fig. 2") for c in figures):
        untested.append(
            f"  - Fig. 2 ({WHAT_IT_SHOWS['fig2']}): not made (it needs the table3 runs)"
        )
    lines = ["## At a glance", ""]
    if untested:
        lines += ["- **No evidence yet** (no run behind these rows; they count as *not run*, "
                  "never as failures):", *untested]  # fmt: skip
    else:
        lines.append("- Every table row has at least one run.")
    measured = []
    for tid, tag in per_table.items():
        counts = tag.get("counts", {})
        judged = {v: int(counts.get(v, 0)) for v in VERDICTS if v != "not run"}
        if sum(judged.values()):
            parts = [f"{n} {_VERDICT_WORDS[v]}" for v, n in judged.items() if n]
            n_cells = sum(judged.values())
            measured.append(f"{tid}: {', '.join(parts)} (of {n_cells} cell{'s' * (n_cells > 1)})")
    if measured:
        lines.append("- **Measured:** " + "; ".join(measured) + ".")
        lines.append(
            "  *Better* is significantly lower than the published value: a different number, not a "
            "reproduction of it, so it is counted apart from *reproduced*."
            if follows
            else "  A reduced protocol: none of these cells is a reproduction of the paper."
        )
    if claims:
        counts = {v: sum(1 for x in claims.values() if x == v) for v in CLAIM_VERDICTS}
        lines.append(
            "- **The paper's claims** (section Claims, tested on these runs): "
            + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
            + f" (of {len(claims)})."
        )
    caveats = [c for tag in per_table.values() for c in tag.get("caveats", [])]
    if caveats:
        lines += ["- **Caveats:**", *[f"  - {c}" for c in caveats]]
    return lines + [""]


_VERDICT_WORDS = {
    "reproduced": "reproduced",
    "better": "better than published",
    "worse": "worse",
    "inconclusive": "inconclusive",
}


_NOT_RUN = {
    "toy": "The toy family (Table 1, Appendix D) was left out of this run (`families`).",
    "baseline": "The baseline family (Kingma et al.'s M2 and M1+M2, Table 2's first rows) was "
    "left out of this run (`families`); its rows are shown as not run.",
    "mnist": "The SCNF MNIST family (Table 2's SCNF rows, Table 3, Fig. 2) was left out of this "
    "run (`families`): each paper-protocol MNIST run is 500 epochs of a 15.9M-parameter flow, "
    "which needs a GPU (about 16.7 s per step on this 2-core CPU, i.e. weeks per run; see "
    "README, Performance). Its rows are shown as not run; nothing is estimated in their place.",
}


_BASELINE_NAMES = {
    "m2": "M2 (Kingma et al., 2014, on pixels)",
    "m1m2": "M1+M2 (Kingma et al., 2014)",
}


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
    lines = [
        "## Wall times",
        "",
        "Snakemake's job benchmarks, summed over seeds: a job resumed from its checkpoint counts "
        "its last attempt only (`runs.csv`'s `train_cpu_s` and `train_wall_s` count every "
        "attempt).",
        "",
        "| step | wall time (s) |",
        "|---|---|",
    ]
    for name, seconds in sorted(timings.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {seconds:.1f} |")
    lines.append(f"| **total** | **{sum(timings.values()):.1f}** |")
    return lines + [""]


def _cost_md(cost: pd.DataFrame) -> list[str]:
    """The Training cost section: CPU and wall seconds of training per run group."""
    lines = [
        "## Training cost",
        "",
        "Per run group, summed over its seeds, from each run's `train_metrics.json` (`runs.csv`'s "
        "`train_cpu_s`, `train_wall_s`): process CPU seconds of training, every attempt of a "
        "resumed run included (core-hours = CPU-s / 3600, whatever the threads); *not recorded* "
        "for runs trained before it was. Evaluation is not counted.",
        "",
        "| run group | runs | train CPU-s | core-hours | train wall-s |",
        "|---|---|---|---|---|",
    ]

    def cell(value: Any, recorded: int, runs: int, fmt: str) -> str:
        if value is None or recorded == 0:
            return "not recorded"
        text = format(value, fmt)
        return text if recorded == runs else f"{text} ({recorded} of {runs} runs)"

    for r in cost.itertuples(index=False):
        hours = None if r.train_cpu_s is None else r.train_cpu_s / 3600
        lines.append(
            f"| {r.group} | {r.runs} | {cell(r.train_cpu_s, r.cpu_recorded, r.runs, ',.0f')} | "
            f"{cell(hours, r.cpu_recorded, r.runs, '.2f')} | "
            f"{cell(r.train_wall_s, r.wall_recorded, r.runs, ',.0f')} |"
        )
    cpu = [v for v in cost["train_cpu_s"] if v is not None and v == v]
    if cpu:
        total, n = sum(cpu), int(cost["cpu_recorded"].sum())
        lines.append(
            f"| **total** ({n} of {int(cost['runs'].sum())} runs recorded) | | **{total:,.0f}** | "
            f"**{total / 3600:.2f}** | |"
        )
    return lines + [""]


def write_report(
    out_md: Path,
    config_name: str,
    tables: dict[str, Path],
    figures: dict[str, Path],
    provenance: dict[str, Any],
    timings: dict[str, float] | None = None,
    protocol: dict[str, Any] | None = None,
    curves: dict[str, Path] | None = None,
    families: list[str] | None = None,
    baselines_left_out: list[str] | None = None,
    claims: Path | None = None,
    cost: pd.DataFrame | None = None,
) -> None:
    """Write REPORT.md.

    Sections: title; a banner when the config does not follow the paper's protocol; how it was
    produced (config, protocol, commit, hardware, date); a verdict summary; each table's
    Markdown inlined (paper values beside ours) with its training curves; figures embedded by
    paths relative to ``out_md``'s directory; provenance details; optional training cost per run
    group and per-step wall times.

    Args:
        out_md: the report path.
        config_name: name of the workflow config (e.g. ``"quick"``).
        tables: table id -> Markdown written by ``write_table``, in display order.
        figures: caption -> PNG path, in display order.
        provenance: ``scnf.provenance.collect()`` of the report step.
        timings: optional step name -> wall time in seconds.
        protocol: the config's ``protocol`` block (``follows_paper``, ``description``).
        curves: optional table id -> PNG of its runs' monitored metrics against steps.
        families: the run families the config trained (``toy``, ``baseline``, ``mnist``); one left
            out is named in the report with the reason its rows are "not run".
        baselines_left_out: baseline models (``m2``, ``m1m2``) the config's ``baseline.models``
            left out although it trains the ``baseline`` family; named the same way.
        claims: the Claims section written by ``scnf.report.claims.write_claims``, inlined
            after the summary.
        cost: ``scnf.report.runs.training_cost`` of the runs, shown before the wall times.
    """
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    curves = curves or {}
    table_text = {tid: Path(p).read_text(encoding="utf-8").strip() for tid, p in tables.items()}
    per_table = {tid: count_verdicts(text) for tid, text in table_text.items()}
    tags = {tid: read_tag(text) for tid, text in table_text.items()}
    total = {v: sum(c.get(v, 0) for c, _ in per_table.values()) for v in VERDICTS}
    follows = bool(protocol and protocol.get("follows_paper", False))
    claims_text = Path(claims).read_text(encoding="utf-8").strip() if claims else ""
    description = (protocol or {}).get("description", "not declared")

    lines = [
        "# Semi-Conditional Normalizing Flows: replication report",
        "",
        *banner(protocol, config_name),
        "Replication of Atanov et al., *Semi-Conditional Normalizing Flows for Semi-Supervised "
        "Learning* (INNF workshop, ICML 2019; arXiv:1905.00505).",
        "",
        *_at_a_glance(tags, figures, follows, read_claims_tag(claims_text)),
        "## How this report was produced",
        "",
        f"- config: `{config_name}`",
        f"- protocol: {'the paper' if follows else 'NOT the paper'}'s. {description}",
        f"- commit: {_commit(provenance)}",
        f"- hardware of the report step: {_hardware(provenance)}"
        " (each run's own is in its metrics.json)",
        f"- date (UTC): {provenance.get('timestamp_utc', 'unknown')}",
        "",
        "## Summary",
        "",
    ]
    if follows:
        lines += [
            "Verdicts per (row, metric) cell; the rule is in each table's footnote. *Reproduced* "
            "and *better* are counted apart: only *reproduced* matches the published value.",
            "",
        ]
    else:
        lines += [
            "This config is a reduced run, so **no cell counts as a reproduction of the paper**: "
            "the counts below say only how the reduced run compares with the published numbers.",
            "",
        ]
    lines += ["| table | " + " | ".join(VERDICTS) + " |", "|---|" + "---|" * len(VERDICTS)]
    for tid, (counts, _) in per_table.items():
        lines.append(f"| {tid} | " + " | ".join(str(counts.get(v, 0)) for v in VERDICTS) + " |")
    lines += ["| **all** | " + " | ".join(f"**{total[v]}**" for v in VERDICTS) + " |", ""]

    left_out = [f"- {_NOT_RUN[f]}" for f in _NOT_RUN if families is not None and f not in families]
    left_out += [
        f"- The baseline {_BASELINE_NAMES.get(m, m)} was left out of this run "
        "(`baseline.models`); its row is shown as not run."
        for m in baselines_left_out or []
    ]
    if left_out:
        lines += ["## Not run", "", *left_out, ""]

    if claims_text:
        lines += [claims_text, ""]

    lines += ["## Tables", ""]
    for tid, text in table_text.items():
        lines += [f"### {tid}", "", text, ""]
        if tid in curves:
            caption = (
                f"{tid}: monitored (non-test) metrics of every run against optimiser steps, one "
                "thin line per seed"
            )
            lines += [f"![{caption}]({_relative(Path(curves[tid]), out_md.parent)})", "",
                      f"*{caption}*", ""]  # fmt: skip

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
    if cost is not None and not cost.empty:
        lines += _cost_md(cost)
    if timings:
        lines += _timings_md(timings)
    out_md.write_text("\n".join(lines), encoding="utf-8")
