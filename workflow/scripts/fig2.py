"""Snakemake script: the paper's Fig. 2 from the reconstruction files of the Table 3 runs."""

from pathlib import Path
from typing import Any


def _main(smk: Any) -> None:
    from smklog import logged

    with logged(smk.log[0]) as log:
        from scnf.report.figures import plot_fig2

        paths = [Path(p) for p in smk.input]
        plot_fig2(paths, Path(smk.output[0]), max_images=int(smk.params.max_images))
        log.info("Fig. 2 from %d reconstruction files", len(paths))


if "snakemake" in globals():
    _main(globals()["snakemake"])
