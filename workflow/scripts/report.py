"""Snakemake script: REPORT.md from the tables, figures, provenance and job benchmarks."""

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any


def read_benchmark(path: str | Path) -> float:
    """Wall time in seconds from a Snakemake benchmark TSV (mean over its repeats)."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows:
        raise ValueError(f"{path}: empty benchmark file")
    return sum(float(r["s"]) for r in rows) / len(rows)


def timings_from_benchmarks(paths: list[str | Path]) -> dict[str, float]:
    """Seconds per step and grid point, summed over seeds.

    ``paths`` follow the workflow's layout below ``benchmarks/``: ``<step>/<dataset>/<variant>/
    seed<seed>.tsv`` for training and evaluation (e.g. ``"train mnist/glow-sgd-zf196 (3 seeds)"``),
    ``baseline/<model>/seed<seed>.tsv`` and ``baseline/m1.tsv`` for the baselines.
    """
    total: dict[tuple[str, str], float] = defaultdict(float)
    count: dict[tuple[str, str], int] = defaultdict(int)
    for p in paths:
        parts = Path(p).parts
        rel = parts[len(parts) - 1 - parts[::-1].index("benchmarks") + 1 :]
        group = list(rel[1:-1])
        if not Path(rel[-1]).stem.startswith("seed"):
            group.append(Path(rel[-1]).stem)
        key = (rel[0], "/".join(group))
        total[key] += read_benchmark(p)
        count[key] += 1
    return {
        f"{s} {g} ({count[s, g]} seed{'s' if count[s, g] > 1 else ''})": t
        for (s, g), t in total.items()
    }


def build_report(smk: Any) -> None:
    """Collect provenance and timings, then call ``scnf.report.write_report``."""
    from scnf.provenance import collect
    from scnf.report.report import write_report
    from scnf.report.runs import read_runs, training_cost

    tables = dict(zip(smk.params.table_ids, (Path(p) for p in smk.input.tables), strict=True))
    curves = dict(zip(smk.params.table_ids, (Path(p) for p in smk.input.curves), strict=True))
    figures = {}
    if smk.input.fig2:  # only when the config trains the MNIST family
        figures["Fig. 2: reconstructions from z_f alone (z_aux = 0)"] = Path(smk.input.fig2[0])
    figures.update(
        zip(smk.params.toy_captions, (Path(p) for p in smk.input.toy_plots), strict=True)
    )
    timings = timings_from_benchmarks(
        [
            *smk.input.train_benchmarks,
            *smk.input.evaluate_benchmarks,
            *smk.input.baseline_benchmarks,
        ]
    )
    config = json.loads(json.dumps(dict(smk.params.config)))  # plain, JSON-able copy
    write_report(
        Path(smk.output[0]),
        smk.params.config_name,
        tables,
        figures,
        collect(config),
        timings,
        protocol=dict(smk.params.protocol),
        curves=curves,
        families=list(smk.params.families),
        baselines_left_out=list(smk.params.baselines_left_out),
        claims=Path(smk.input.claims),
        cost=training_cost(read_runs(smk.input.runs)),
    )


def _main(smk: Any) -> None:
    from smklog import logged

    with logged(smk.log[0]) as log:
        build_report(smk)
        log.info("wrote %s", smk.output[0])


if "snakemake" in globals():
    _main(globals()["snakemake"])
