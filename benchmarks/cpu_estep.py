"""EM-SGD's E-step pass on the CPU: eager ``posterior_and_latent`` vs ``compiled_posterior``.

The E-step scores every unlabelled training image (59,900 for MNIST with 100 labels) in batches
of ``eval.batch_size``; with ``train.compile`` the training loop runs it compiled. This times
both on the CPU protocol's model (``config/cpu.yaml``, one thread, process CPU time, interleaved
rounds) on a batch of random images, after checking that both give the same responsibilities
and z_f (to float rounding), and prints the cost of one E-step over 59,900 images.

    python benchmarks/cpu_estep.py --out results/bench/cpu-estep-<date>.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scnf.presets import make_model  # noqa: E402
from scnf.provenance import collect, write_json  # noqa: E402
from scnf.train.em import compiled_posterior, posterior_and_latent  # noqa: E402

# The CPU protocol's model, read from its config (the one place it is written down).
CPU_MODEL = yaml.safe_load((REPO / "config/cpu.yaml").read_text())["mnist"]["model"]
N_UNLABELLED = 59_900


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=["mnist-glow", "mnist-gmm"])
    p.add_argument("--zf-dim", type=int, default=196)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--batches", type=int, default=3, help="batches per variant and round")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    results = []
    for preset in args.presets:
        torch.manual_seed(0)
        model = make_model(preset, **CPU_MODEL, zf_dim=args.zf_dim)
        x = torch.rand(args.batch_size, 1, 28, 28)
        with torch.no_grad():
            model.log_joint_all(x[:64])  # ActNorm's data-dependent init, as training does
        model.eval()
        variants = {
            "eager": lambda v, m=model: posterior_and_latent(m, v),
            "compiled": compiled_posterior(model, args.batch_size),
        }
        with torch.no_grad():
            t0 = time.process_time()
            fast = variants["compiled"](x)
            compile_cpu_s = time.process_time() - t0
            plain = variants["eager"](x)
            # largest difference relative to the largest value, of p(k | x) and of z_f
            diff = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(fast, plain))
            cpu = {name: 0.0 for name in variants}
            for _ in range(args.rounds):
                for name, fn in variants.items():
                    t0 = time.process_time()
                    for _ in range(args.batches):
                        fn(x)
                    cpu[name] += time.process_time() - t0
        n = args.rounds * args.batches * args.batch_size
        row = {
            "preset": preset,
            "zf_dim": args.zf_dim,
            "batch_size": args.batch_size,
            "max_rel_diff": diff,
            "compile_cpu_s": compile_cpu_s,
            "images_per_cpu_s": {k: n / v for k, v in cpu.items()},
            "estep_cpu_s": {k: N_UNLABELLED * v / n for k, v in cpu.items()},
            "speedup": cpu["eager"] / cpu["compiled"],
        }
        results.append(row)
        print(
            f"{preset} z_f {args.zf_dim}, batch {args.batch_size}, 1 thread: "
            + ", ".join(
                f"{k} {row['images_per_cpu_s'][k]:.0f} img/CPU-s "
                f"({row['estep_cpu_s'][k]:.0f} CPU-s per E-step)"
                for k in variants
            )
            + f"; x{row['speedup']:.2f}; compiling {compile_cpu_s:.0f} CPU-s once; "
            f"max relative diff {diff:.1e}",
            flush=True,
        )
    if args.out is not None:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        write_json(
            args.out,
            {
                "results": results,
                "load_avg_at_end": list(os.getloadavg()),
                "provenance": collect(settings, time.perf_counter() - start),
            },
        )
        print("wrote", args.out)


if __name__ == "__main__":
    main()
