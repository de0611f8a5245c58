"""Snakemake script: one of the paper's Tables 1-3 from the runs' metrics.json files."""

from pathlib import Path
from typing import Any


def _main(smk: Any) -> None:
    from smklog import logged

    with logged(smk.log[0]) as log:
        from scnf.report.tables import write_table

        paths = [Path(p) for p in smk.input]
        rows = write_table(smk.wildcards.table, paths, Path(smk.output.csv), Path(smk.output.md))
        log.info("%s: %d rows from %d metrics files", smk.wildcards.table, len(rows), len(paths))


if "snakemake" in globals():
    _main(globals()["snakemake"])
