"""Seconds per epoch of the Kingma et al. (2014) baselines on this machine's CPU.

For M1 (784-600-600-50 VAE, batch 100), M2 on pixels and M1+M2 on M1's latent (one labelled +
599 unlabelled objects per step, the unlabelled bound summed over the 10 classes), this times
optimiser steps (forward, backward, Adam) on random inputs of the right shapes (the cost does
not depend on the values) with 1 and 2 torch threads, and converts them to seconds per epoch
of the full MNIST training set (60,000 images; an M2 epoch is one pass over the 59,900
unlabelled ones). Wall time and process CPU time are both reported: on a shared machine the
wall time is inflated by other processes, the CPU time much less.

Run:  python benchmarks/baseline_speed.py [--steps 20] [--out results/bench/baseline-speed.json]
The figures depend on the machine; the JSON carries provenance (scnf.provenance.collect).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import torch

from scnf.baselines import M1, M2
from scnf.provenance import collect, write_json

N_TRAIN, N_LAB = 60_000, 100


def _m1_step(hidden: list[int], batch: int):
    model = M1(784, hidden, 50)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)

    def step() -> None:
        x = torch.bernoulli(torch.full((batch, 784), 0.2))
        loss = -model.elbo(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step, math.ceil(N_TRAIN / batch)


def _m2_step(x_dim: int, hidden: int, likelihood: str, b_lab: int, b_unl: int):
    model = M2(x_dim, hidden, 50, 10, likelihood)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)

    def draw(n: int) -> torch.Tensor:
        if likelihood == "bernoulli":
            return torch.bernoulli(torch.full((n, x_dim), 0.2))
        return torch.randn(n, x_dim)

    def step() -> None:
        terms = model.objective(
            draw(b_lab), torch.randint(10, (b_lab,)), draw(b_unl), N_LAB, N_TRAIN - N_LAB,
            0.1 * N_TRAIN,
        )  # fmt: skip
        opt.zero_grad()
        terms.loss.backward()
        opt.step()

    return step, math.ceil((N_TRAIN - N_LAB) / b_unl)


def time_steps(step, steps: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return {
        "wall_s_per_step": (time.perf_counter() - wall) / steps,
        "cpu_s_per_step": (time.process_time() - cpu) / steps,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", default="results/bench/baseline-speed.json")
    args = p.parse_args()
    # name -> (factory, settings recorded in the JSON)
    models: dict[str, tuple[Any, dict[str, Any]]] = {
        "m1": (lambda: _m1_step([600, 600], 100),
               {"hidden": [600, 600], "latent": 50, "batch_size": 100}),
        "m2-h500": (lambda: _m2_step(784, 500, "bernoulli", 1, 599),
                    {"x_dim": 784, "hidden": 500, "batch": "1 + 599"}),
        "m1m2-h500": (lambda: _m2_step(50, 500, "gaussian", 1, 599),
                      {"x_dim": 50, "hidden": 500, "batch": "1 + 599"}),
        "m1m2-h300": (lambda: _m2_step(50, 300, "gaussian", 1, 599),
                      {"x_dim": 50, "hidden": 300, "batch": "1 + 599"}),
    }  # fmt: skip
    results = []
    wall0 = time.perf_counter()
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, (factory, settings) in models.items():
            torch.manual_seed(0)
            step, steps_per_epoch = factory()
            t = time_steps(step, args.steps)
            row = {"model": name, "threads": threads, **settings,
                   "steps_per_epoch": steps_per_epoch, **t,
                   "wall_s_per_epoch": t["wall_s_per_step"] * steps_per_epoch,
                   "cpu_s_per_epoch": t["cpu_s_per_step"] * steps_per_epoch}  # fmt: skip
            results.append(row)
            print(
                f"{name:10s} threads={threads}: {row['wall_s_per_epoch']:7.1f} s/epoch wall, "
                f"{row['cpu_s_per_epoch']:7.1f} s/epoch CPU ({steps_per_epoch} steps)"
            )
    wall = time.perf_counter() - wall0
    config = {"steps": args.steps, "threads": args.threads, "n_train": N_TRAIN}
    write_json(args.out, {"results": results, "provenance": collect(config, wall)})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
