"""Snakemake script: write one run's RUN.yaml (the ``scnf train`` run config).

The settings come in as a params value computed by ``experiment_grid.run_settings`` from the
workflow config and the run's wildcards; this script only adds the split file and writes YAML.
"""

from pathlib import Path
from typing import Any

import yaml


def write_run_config(settings: dict[str, Any], split: str, out: str | Path) -> dict[str, Any]:
    """Write ``settings`` plus ``split`` to ``out`` as YAML, keys in a readable order."""
    run = {"split": str(split), **settings}
    order = ["name", "dataset", "preset", "model", "seed", "split", "data", "train", "eval"]
    run = {k: run[k] for k in order if k in run} | {k: v for k, v in run.items() if k not in order}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("# Written by the workflow's run_config rule; edit config/*.yaml instead.\n")
        yaml.safe_dump(run, fh, sort_keys=False, default_flow_style=None)
    return run


def _main(smk: Any) -> None:
    from smklog import logged

    with logged(smk.log[0]) as log:
        run = write_run_config(dict(smk.params.settings), smk.input.split, smk.output[0])
        log.info("wrote %s for %s", smk.output[0], run["name"])


if "snakemake" in globals():
    _main(globals()["snakemake"])
