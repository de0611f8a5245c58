"""Run a Snakemake DAG, time it, and record what ran in ``results/<name>/pipeline_run.json``.

    python benchmarks/timed_dag.py --name quick -- --cores 2 --configfile config/quick.yaml
    python benchmarks/timed_dag.py --name paper -- --cores 2 results/paper/tables/table1.md

Everything after ``--`` goes to ``snakemake`` unchanged. The record holds the command, its wall
time and exit status, the per-rule sums of the job wall times that Snakemake's ``benchmark:``
files measured (only jobs whose benchmark file changed during this call count), the job counts,
and provenance (commit, hardware). Nothing in it is typed by hand.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scnf.provenance import collect, write_json  # noqa: E402


def _bench_seconds(path: Path) -> float:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return sum(float(r["s"]) for r in rows) / max(len(rows), 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="the config's name (its results/<name>/)")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER)
    a = p.parse_args()
    args = [x for x in a.snakemake_args if x != "--"]
    bench_dir = REPO / "results" / a.name / "benchmarks"
    before = {f: f.stat().st_mtime for f in bench_dir.rglob("*.tsv")} if bench_dir.exists() else {}
    cmd = [sys.executable, "-m", "snakemake", *args]
    start = time.perf_counter()
    rc = subprocess.call(cmd, cwd=REPO)
    wall = time.perf_counter() - start

    per_rule: dict[str, float] = defaultdict(float)
    jobs: dict[str, int] = defaultdict(int)
    for f in sorted(bench_dir.rglob("*.tsv")) if bench_dir.exists() else []:
        if before.get(f) == f.stat().st_mtime:
            continue  # not run by this call
        step, dataset = f.relative_to(bench_dir).parts[:2]
        family = "mnist" if dataset == "mnist" else "toy"
        rule = f"{step}_{family}" if step in ("train", "evaluate") else step
        per_rule[rule] += _bench_seconds(f)
        jobs[rule] += 1
    record = {
        "command": "snakemake " + shlex.join(args),
        "exit_status": rc,
        "wall_s": round(wall, 1),
        "benchmarked_jobs": dict(jobs),
        "per_rule_wall_s_sum": {k: round(v, 1) for k, v in per_rule.items()},
        "provenance": collect({"snakemake_args": args}, wall),
    }
    out = REPO / "results" / a.name / "pipeline_run.json"
    write_json(out, record)
    print(f"wrote {out}: exit {rc}, {wall:.1f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
