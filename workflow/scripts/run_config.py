"""Write one run's RUN.yaml (the ``scnf train`` run config): the run_config rule's command.

The settings come in as JSON computed by ``experiment_grid.run_settings`` from the workflow
config and the run's wildcards; this script only adds the split file and writes YAML::

    python workflow/scripts/run_config.py --settings '{...}' --split S.json --out RUN.yaml
"""

import argparse
import json
import sys
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


def main(argv: list[str] | None = None) -> None:
    """Command line: ``--settings`` (JSON), ``--split`` and ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", required=True, help="the run's settings as JSON")
    parser.add_argument("--split", required=True, help="label split file of the run")
    parser.add_argument("--out", required=True, help="RUN.yaml to write")
    args = parser.parse_args(argv)
    run = write_run_config(json.loads(args.settings), args.split, args.out)
    print(f"wrote {args.out} for {run['name']}", file=sys.stderr)


if __name__ == "__main__":
    main()
