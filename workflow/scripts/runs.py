"""Snakemake script: runs.csv (one row per run) and curves.csv (monitored metrics per epoch)."""

from pathlib import Path
from typing import Any


def _main(smk: Any) -> None:
    from smklog import logged

    with logged(smk.log[0]) as log:
        from scnf.report.runs import collect_curves, write_runs

        paths = [Path(p) for p in smk.input]
        runs = write_runs(paths, Path(smk.output.runs))
        curves = collect_curves(paths)
        curves.to_csv(smk.output.curves, index=False)
        log.info("%d runs, %d monitored epochs from %d metrics files", len(runs), len(curves),
                 len(paths))  # fmt: skip


if "snakemake" in globals():
    _main(globals()["snakemake"])
