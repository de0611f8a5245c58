"""Snakemake script: one of the paper's Tables 1-3 from runs.csv."""

from pathlib import Path
from typing import Any


def _main(smk: Any) -> None:
    from smklog import logged

    with logged(smk.log[0]) as log:
        from scnf.report.tables import write_table

        rows = write_table(
            smk.wildcards.table,
            Path(smk.input.runs),
            Path(smk.output.csv),
            Path(smk.output.md),
            protocol=dict(smk.params.protocol),
            config_name=smk.params.config_name,
            limits_path=smk.input.limits[0] if smk.input.limits else None,
        )
        log.info("%s: %d rows from %s", smk.wildcards.table, len(rows), smk.input.runs)


if "snakemake" in globals():
    _main(globals()["snakemake"])
