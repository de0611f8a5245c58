"""Summarise the toy recipe search (validation set only) as Markdown tables.

Reads ``results/toy-recipe/search.json`` (``toy_recipe_search.py``) and ``runs.json``
(``toy_recipe_runs.py``) and prints, per candidate and row, the validation error (%) and NLL
(nats) at the end of the run as mean +- std over the label seeds it was run for, and per seed.
The README of ``results/toy-recipe/`` quotes this output; nothing in it is typed by hand.

    python benchmarks/toy_recipe_summary.py [--only lab01-wd nat-clf1 ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load(recipe_dir: Path) -> dict[tuple[str, str, str], dict[int, dict[str, float]]]:
    """(candidate, dataset, preset) -> seed -> last validation monitor of that run."""
    out: dict[tuple[str, str, str], dict[int, dict[str, float]]] = defaultdict(dict)
    for name, key in (("search.json", "config"), ("runs.json", "candidate")):
        path = recipe_dir / name
        if not path.exists():
            continue
        for run in json.loads(path.read_text())["runs"].values():
            if not run.get("curve"):
                continue
            last = run["curve"][-1]
            out[(run[key], run["dataset"], run["preset"])][run["seed"]] = {
                "err": last["val_error"],
                "nll": last["val_nll"],
                "step": last["step"],
            }
    return out


def _ms(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def table(runs: dict, only: list[str] | None = None) -> str:
    lines = [
        "| candidate | dataset | preset | steps | seeds | val error (%) | val NLL (nats) "
        "| per seed (error / NLL) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (cand, ds, preset), seeds in sorted(runs.items()):
        if only and cand not in only:
            continue
        ss = sorted(seeds)
        errs = [seeds[s]["err"] for s in ss]
        nlls = [seeds[s]["nll"] for s in ss]
        per = ", ".join(f"{seeds[s]['err']:.2f} / {seeds[s]['nll']:.3f}" for s in ss)
        steps = max(seeds[s]["step"] for s in ss)
        lines.append(
            f"| {cand} | {ds} | {preset} | {steps} | {','.join(map(str, ss))} "
            f"| {_ms(errs, '.2f')} | {_ms(nlls, '.3f')} | {per} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, default=REPO / "results/toy-recipe")
    p.add_argument("--only", nargs="+", default=None, help="candidates to list")
    args = p.parse_args(argv)
    print(table(load(args.dir), args.only))


if __name__ == "__main__":
    main()
