"""Snakemake script: one table's training curves (monitored, non-test metrics against steps)."""

from pathlib import Path
from typing import Any


def _main(smk: Any) -> None:
    from smklog import logged

    with logged(smk.log[0]) as log:
        from scnf.report.figures import plot_curves
        from scnf.report.runs import collect_curves

        curves = collect_curves([Path(p) for p in smk.input])
        title = f"{smk.wildcards.table}: monitored metrics (seeds as thin lines)"
        plot_curves(curves, Path(smk.output[0]), title=title)
        log.info("%s: %d monitored epochs", smk.wildcards.table, len(curves))


if "snakemake" in globals():
    _main(globals()["snakemake"])
