"""One LU-parametrised linear map (``InvertibleLinear``) on vectors: built W vs factors applied.

h_phi at z_f 784 applies 784 x 784 LU maps to 64 rows (its class-free first map, once per
object) and to 640 rows (10 classes x 64). Building W = L U costs 2 C^3 FLOPs forward whatever
the batch; applying U and then L to B rows costs 4 B C^2 (``factors_for_few_rows``, taken when
B < C). This times forward + backward of both, interleaved, on one thread, process CPU time.

    python benchmarks/lu_rows.py                       # C 784, B 64 and 640
    python benchmarks/lu_rows.py --channels 196 --rows 64 640 --out results/bench/lu.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scnf.layers import InvertibleLinear  # noqa: E402
from scnf.provenance import collect, write_json  # noqa: E402


def time_variant(layer: InvertibleLinear, x: torch.Tensor, factors: bool, reps: int) -> float:
    """Mean process CPU seconds of one forward + backward."""
    InvertibleLinear.factors_for_few_rows = factors
    start = time.process_time()
    for _ in range(reps):
        z, logdet = layer(x)
        (z.square().sum() + logdet.sum()).backward()
    return (time.process_time() - start) / reps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--channels", type=int, default=784)
    p.add_argument("--rows", nargs="+", type=int, default=[64, 640])
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--reps", type=int, default=10, help="forward + backward per variant and round")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layer = InvertibleLinear(args.channels)
    default = InvertibleLinear.factors_for_few_rows
    results = []
    try:
        for rows in args.rows:
            x = torch.randn(rows, args.channels, requires_grad=True)
            with torch.no_grad():
                InvertibleLinear.factors_for_few_rows = False
                built = layer(x)[0]
                InvertibleLinear.factors_for_few_rows = True
                applied = layer(x)[0]
            rel = float((built - applied).abs().max() / built.abs().max())
            times: dict[bool, list[float]] = {False: [], True: []}
            for factors in (False, True):  # warm-up
                time_variant(layer, x, factors, 2)
            for _ in range(args.rounds):
                for factors in (False, True):
                    times[factors].append(time_variant(layer, x, factors, args.reps))
            row = {
                "channels": args.channels,
                "rows": rows,
                "factors_path_taken": rows < args.channels,
                "built_ms": 1e3 * statistics.median(times[False]),
                "factors_ms": 1e3 * statistics.median(times[True]),
                "max_rel_diff": rel,
            }
            row["speedup"] = row["built_ms"] / row["factors_ms"]
            results.append(row)
            print(
                f"C {args.channels} B {rows}: built W {row['built_ms']:.1f} ms, factors "
                f"{row['factors_ms']:.1f} ms per forward + backward (x{row['speedup']:.2f}; "
                f"factors path {'taken' if row['factors_path_taken'] else 'not taken: B >= C'}), "
                f"outputs within {rel:.1e} relative"
            )
    finally:
        InvertibleLinear.factors_for_few_rows = default
    if args.out:
        write_json(
            args.out,
            {
                "results": results,
                "threads": args.threads,
                "provenance": collect(vars(args) | {"out": str(args.out)}, 0.0),
            },
        )


if __name__ == "__main__":
    main()
