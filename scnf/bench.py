"""Benchmark: training and evaluation throughput, and the semi-conditional cost ratio.

``python -m scnf bench --preset mnist-glow --batch-size 256`` prints (and with
``--json`` writes) figures measured in one process:

* training throughput (images/s) of full steps: forward, objective of eq. (1)
  on a labelled/unlabelled mix, backward, optimiser step; wall and process CPU time per
  step (CPU time / wall time = threads kept busy); peak memory;
* evaluation throughput of ``log_posterior``;
* cost ratio time(log_marginal) / time(log_joint) on one batch, beside the same
  ratio for a naive fully conditional model that must run f_w once per class;
* FLOPs per image of a training step (torch's FLOP counter) and the FLOP/s reached.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from typing import Any

import torch

from scnf.data import dequantize
from scnf.device import configure_precision, resolve_device
from scnf.presets import PRESETS, make_model
from scnf.train.batches import labelled_count
from scnf.train.config import TrainConfig
from scnf.train.objective import semi_supervised_objective
from scnf.train.optim import make_optimizer


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="mnist-glow", choices=sorted(PRESETS), help="model preset")
    p.add_argument("--batch-size", type=int, default=256, help="images (points) per step")
    p.add_argument("--steps", type=int, default=20, help="timed training steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile, caches)")
    p.add_argument(
        "--labelled-fraction", type=float, default=1 / 3, help="labelled share of each batch"
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where to run: auto = CUDA if visible, else the CPU",
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "tf32", "bf16"],
        default="fp32",
        help="CUDA only (bf16: autocast of the coupling networks); the CPU always runs fp32",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the training objective")
    p.add_argument(
        "--compile-mode",
        default="default",
        choices=["default", "reduce-overhead", "max-autotune-no-cudagraphs"],
        help="torch.compile mode (reduce-overhead: CUDA graphs)",
    )
    p.add_argument(
        "--model",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="make_model overrides, e.g. hidden=64 steps_per_level=2",
    )
    p.add_argument("--skip-ratio", action="store_true", help="skip the cost-ratio measurement")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = json.loads(value) if value[:1] in "[{0123456789-tfn" else value
    return out


def _timer(device: torch.device) -> Callable[[], float]:
    def now() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    return now


def _inputs(model, batch: int, device: torch.device) -> torch.Tensor:
    if hasattr(model.flow, "input_shape"):
        shape = (batch, *model.flow.input_shape)
        return dequantize(torch.randint(0, 256, shape, dtype=torch.uint8, device=device))
    return torch.randn(batch, 2, device=device)


def _time_calls(fn: Callable[[], Any], reps: int, now: Callable[[], float]) -> float:
    fn()
    t0 = now()
    for _ in range(reps):
        fn()
    return (now() - t0) / reps


def _interleaved_medians(
    calls: dict[str, Callable[[], Any]], reps: int, now: Callable[[], float]
) -> dict[str, float]:
    """Median seconds per call, the calls interleaved so drifting load hits all of them alike."""
    for fn in calls.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(reps):
        for name, fn in calls.items():
            t0 = now()
            fn()
            samples[name].append(now() - t0)
    return {k: sorted(v)[len(v) // 2] for k, v in samples.items()}


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    dev = resolve_device(args.device)
    t = TrainConfig(precision=args.precision)
    autocast = configure_precision(t, dev)
    torch.manual_seed(0)
    overrides = _parse_overrides(args.model)
    model = make_model(args.preset, **overrides).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    opt = make_optimizer(model, t)
    x = _inputs(model, args.batch_size, dev)
    n_lab = labelled_count(args.batch_size, args.labelled_fraction)
    y = torch.randint(model.num_classes, (n_lab,), device=dev)
    now = _timer(dev)

    def objective(xb: torch.Tensor, yb: torch.Tensor):
        with torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None):
            return semi_supervised_objective(model, xb, yb)

    model.train()
    objective(x, y)  # ActNorm data-dependent init, eagerly
    fn = torch.compile(objective, mode=args.compile_mode) if args.compile else objective
    graphs = args.compile and args.compile_mode == "reduce-overhead"

    def step() -> None:
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        opt.zero_grad(set_to_none=True)
        fn(x, y).loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0, c0 = now(), time.process_time()
    for _ in range(args.steps):
        step()
    step_s = (now() - t0) / args.steps
    step_cpu_s = (time.process_time() - c0) / args.steps  # all threads of this process
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        opt.zero_grad(set_to_none=True)
        objective(x, y).loss.backward()
    flops_per_image = counter.get_total_flops() / args.batch_size

    model.eval()
    reps = max(3, args.steps // 2)
    with torch.no_grad(), torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None):
        eval_s = _time_calls(lambda: model.log_posterior(x), reps, now)
        result: dict[str, Any] = {}
        if not args.skip_ratio:
            yy = torch.randint(model.num_classes, (args.batch_size,), device=dev)
            ks = [torch.full_like(yy, c) for c in range(model.num_classes)]

            def naive() -> torch.Tensor:
                # A fully conditional flow would need f_w(x, y) for every class: K passes.
                return torch.logsumexp(torch.stack([model.log_joint(x, c) for c in ks], 1), 1)

            calls = {
                "joint": lambda: model.log_joint(x, yy),
                "marginal": lambda: model.log_marginal(x),
                "naive": naive,
            }
            times = _interleaved_medians(calls, reps, now)
            result.update(
                log_joint_ms=1e3 * times["joint"],
                log_marginal_ms=1e3 * times["marginal"],
                naive_marginal_ms=1e3 * times["naive"],
                cost_ratio=times["marginal"] / times["joint"],
                naive_cost_ratio=times["naive"] / times["joint"],
            )
    result.update(
        preset=args.preset,
        model_overrides=overrides,
        parameters=n_params,
        batch_size=args.batch_size,
        labelled_per_batch=n_lab,
        device=torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        precision=args.precision if dev.type == "cuda" else "fp32 (CPU: no autocast)",
        compile=args.compile,
        compile_mode=args.compile_mode if args.compile else None,
        train_step_ms=1e3 * step_s,
        train_step_cpu_ms=1e3 * step_cpu_s,
        train_images_per_s=args.batch_size / step_s,
        peak_memory_gib=peak,
        eval_images_per_s=args.batch_size / eval_s,
        train_gflop_per_image=flops_per_image / 1e9,
        achieved_tflop_per_s=flops_per_image * args.batch_size / step_s / 1e12,
    )
    return result


def main(args: argparse.Namespace) -> None:
    result = run_bench(args)
    width = max(len(k) for k in result)
    for key, value in result.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {text}")
    if args.json:
        from scnf.provenance import collect, write_json

        write_json(args.json, {**result, "provenance": collect(vars(args))})
