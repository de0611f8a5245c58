"""The CPU training step of the MNIST flows, side by side: the plain layers vs the kept fast path.

Variants, each its own model built from the same seed, timed in interleaved blocks of steps
(so that a drifting machine load hits all of them alike) with the process's CPU time and the
wall time:

* ``eager-plain``: the layers as they were before the CPU work (masked couplings that
  multiply zeros, P @ L @ U, h_phi's class-free first layers run for every class);
* ``eager-fast``: channel-split couplings (``AffineCoupling.split_channels``), the LU
  permutation as a gather (``InvertibleLinear.gather_permutation``), the LU factors applied
  in turn to batches of fewer rows than channels (``InvertibleLinear.factors_for_few_rows``:
  h_phi at z_f 784), h_phi's class-free first layers once per object
  (``ConditionalGlow.share_class_free_layers``);
* ``compiled-fast``: the same under ``torch.compile`` (inductor's C++ backend on the CPU).

Before timing, one step of every variant on the same batch checks that the losses agree
within 1e-5 relative. FLOPs per image come from torch's FLOP counter on the plain step (the
work the model defines, zeros included) and on the fast step (the work done).

    python benchmarks/cpu_step.py --out results/bench/cpu-step.json          # all sizes
    python benchmarks/cpu_step.py --sizes cpu-196 --threads 1 --blocks 2     # one, quick
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scnf.conditional import ConditionalGlow  # noqa: E402
from scnf.data import dequantize  # noqa: E402
from scnf.layers import AffineCoupling, InvertibleLinear  # noqa: E402
from scnf.presets import make_model  # noqa: E402
from scnf.provenance import collect, write_json  # noqa: E402
from scnf.train.batches import labelled_count  # noqa: E402
from scnf.train.objective import semi_supervised_objective  # noqa: E402

# The CPU protocol's model, read from its config (the one place it is written down).
CPU_MODEL = yaml.safe_load((REPO / "config/cpu.yaml").read_text())["mnist"]["model"]
SIZES: dict[str, dict[str, Any]] = {
    "cpu-196": {"preset": "mnist-glow", "model": {**CPU_MODEL, "zf_dim": 196}},
    "cpu-784": {"preset": "mnist-glow", "model": {**CPU_MODEL, "zf_dim": 784}},
    "cpu-gmm-196": {"preset": "mnist-gmm", "model": {**CPU_MODEL, "zf_dim": 196}},
    "paper-196": {"preset": "mnist-glow", "model": {}},
}
FAST_SWITCHES = (
    (AffineCoupling, "split_channels"),
    (InvertibleLinear, "gather_permutation"),
    (InvertibleLinear, "factors_for_few_rows"),
    (ConditionalGlow, "share_class_free_layers"),
)
# One core of the benchmark machine: AMD EPYC Zen 3 at 2.45 GHz, AVX2, two 256-bit FMA units:
# 2.45e9 x 2 units x 8 floats x 2 FLOP = 78.4 GFLOP/s fp32.
PEAK_GFLOPS_PER_CORE = 78.4


@contextlib.contextmanager
def layers(fast: bool):
    old = [getattr(cls, name) for cls, name in FAST_SWITCHES]
    for cls, name in FAST_SWITCHES:
        setattr(cls, name, fast)
    try:
        yield
    finally:
        for (cls, name), value in zip(FAST_SWITCHES, old):
            setattr(cls, name, value)


class Variant:
    """One model + optimiser + (compiled) objective, stepping on a fixed batch."""

    def __init__(self, name: str, size: dict[str, Any], x: torch.Tensor, y: torch.Tensor):
        self.name, self.fast = name, not name.endswith("plain")
        torch.manual_seed(0)
        self.model = make_model(size["preset"], **size["model"])
        self.opt = torch.optim.Adam(self.model.parameters(), 1e-3)
        self.x, self.y = x, y
        with layers(self.fast):
            self.objective(x, y)  # ActNorm's data-dependent init, eagerly
        # Move off the zero-initialised couplings (identity maps at init), identically in every
        # variant, so that the loss check below exercises every layer.
        gen = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for p in self.model.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=gen))
        self.fn = torch.compile(self.objective) if name.startswith("compiled") else self.objective
        self.cpu: list[float] = []
        self.wall: list[float] = []

    def objective(self, x: torch.Tensor, y: torch.Tensor):
        return semi_supervised_objective(self.model, x, y, "sgd", 1.0)

    def loss(self) -> float:
        with layers(self.fast):
            return float(self.fn(self.x, self.y).loss)

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.fn(self.x, self.y).loss.backward()
        self.opt.step()

    def block(self, steps: int) -> None:
        with layers(self.fast):
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(steps):
                self.step()
            self.cpu.append((time.process_time() - c0) / steps)
            self.wall.append((time.perf_counter() - w0) / steps)


def float64_loss(v: Variant) -> float:
    import copy

    model = copy.deepcopy(v.model).double()
    with layers(False), torch.no_grad():
        return float(semi_supervised_objective(model, v.x.double(), v.y, "sgd", 1.0).loss)


def flops_per_image(v: Variant, batch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with layers(v.fast), FlopCounterMode(display=False) as counter:
        v.opt.zero_grad(set_to_none=True)
        v.objective(v.x, v.y).loss.backward()
    return counter.get_total_flops() / batch


def bench_size(name: str, batch: int, threads: int, blocks: int, steps: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    size = SIZES[name]
    gen = torch.Generator().manual_seed(1)
    x = dequantize(torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8, generator=gen))
    y = torch.randint(10, (labelled_count(batch, 1 / 3),), generator=gen)
    variants = [Variant(v, size, x, y) for v in ("eager-plain", "eager-fast", "compiled-fast")]
    losses = {v.name: v.loss() for v in variants}  # also compiles, before any timing
    ref = losses["eager-plain"]
    rel = {k: abs(v - ref) / abs(ref) for k, v in losses.items()}
    # The float32 rounding of the loss itself: the plain layers in float64 on the same weights.
    exact = float64_loss(variants[0])
    rel64 = {k: abs(v - exact) / abs(exact) for k, v in losses.items()}
    flops = {
        "plain": flops_per_image(variants[0], batch),
        "fast": flops_per_image(variants[1], batch),
    }
    for v in variants:
        v.step()  # untimed warm-up
    for _ in range(blocks):
        for v in variants:
            v.block(steps)
    out: dict[str, Any] = {
        "size": name,
        **size,
        "parameters": sum(p.numel() for p in variants[0].model.parameters()),
        "batch_size": batch,
        "threads": threads,
        "loss_rel_diff_vs_plain": rel,
        "loss_rel_diff_vs_float64": rel64,
        "gflop_per_image": {k: v / 1e9 for k, v in flops.items()},
        "variants": {},
    }
    for v in variants:
        cpu, wall = statistics.median(v.cpu), statistics.median(v.wall)
        out["variants"][v.name] = {
            "cpu_s_per_step": cpu,
            "wall_s_per_step": wall,
            "images_per_cpu_s": batch / cpu,
            "images_per_wall_s": batch / wall,
            "images_per_cpu_s_per_thread": batch / cpu,  # CPU time already sums the threads
            "useful_gflop_per_cpu_s": flops["fast"] * batch / cpu / 1e9,
        }
    base = out["variants"]["eager-plain"]["images_per_cpu_s"]
    for rec in out["variants"].values():
        rec["speedup_vs_eager_plain"] = rec["images_per_cpu_s"] / base
        rec["share_of_core_peak"] = rec["useful_gflop_per_cpu_s"] / PEAK_GFLOPS_PER_CORE
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=["cpu-196", "cpu-784", "paper-196"],
                   choices=sorted(SIZES))  # fmt: skip
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--blocks", type=int, default=4, help="interleaved timing rounds")
    p.add_argument("--steps", type=int, default=4, help="steps per variant and round")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = p.parse_args(argv)
    results = []
    for name in args.sizes:
        for threads in args.threads:
            steps = max(1, args.steps // 2) if name.startswith("paper") else args.steps
            r = bench_size(name, args.batch_size, threads, args.blocks, steps)
            results.append(r)
            print(f"\n{name} ({r['parameters']:,} parameters), batch {r['batch_size']}, "
                  f"{threads} thread(s); GFLOP/image plain {r['gflop_per_image']['plain']:.3f}"
                  f", fast {r['gflop_per_image']['fast']:.3f}")  # fmt: skip
            for vn, v in r["variants"].items():
                print(
                    f"  {vn:14s} {v['images_per_cpu_s']:7.1f} img/CPU-s "
                    f"{v['images_per_wall_s']:7.1f}"
                    f" img/wall-s  x{v['speedup_vs_eager_plain']:.2f}  "
                    f"{v['useful_gflop_per_cpu_s']:5.1f} GFLOP/CPU-s "
                    f"({100 * v['share_of_core_peak']:.0f} % of a core's peak)  "
                    f"loss rel diff {r['loss_rel_diff_vs_plain'][vn]:.1e} vs plain, "
                    f"{r['loss_rel_diff_vs_float64'][vn]:.1e} vs float64",
                    flush=True,
                )
    if args.out:
        meta = {
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "load_avg_at_end": os.getloadavg(),
            "peak_gflops_per_core": PEAK_GFLOPS_PER_CORE,
        }
        write_json(args.out, {"results": results, **meta, "provenance": collect(vars(args))})


if __name__ == "__main__":
    main()
