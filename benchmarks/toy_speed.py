"""FFJORD training cost on the toy problems: solver tolerance and divergence vs speed and NLL.

For each setting (divergence computation, training solver, training atol = rtol) this trains
``toy-ffjord-glow`` on moons from the same initialisation with the same batches and reports:

* NFE per training solve (calls of the ODE function in one forward integration; backprop
  through the solver re-uses the graph and calls it no more),
* seconds per optimiser step (forward + backward + Adam, one thread), as wall time and as
  process CPU time (the latter is not inflated by other processes sharing the cores),
* the validation NLL and error after training, always scored in eval mode with the
  evaluation solver (dopri5, atol = rtol = 1e-5), and the NFE of that evaluation solve.

Run:  python benchmarks/toy_speed.py [--steps 300] [--out results/bench/toy-speed.json]
The figures depend on the machine; the JSON carries provenance (scnf.provenance.collect).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from typing import Any

import torch

import scnf
from scnf.data import make_toy
from scnf.evaluate import score
from scnf.provenance import collect, write_json
from scnf.train.batches import BatchSampler, SemiSupervisedData
from scnf.train.config import TrainConfig
from scnf.train.objective import semi_supervised_objective
from scnf.train.optim import make_optimizer, make_scheduler

# (divergence, training method, training atol = rtol)
SETTINGS: list[tuple[str, str, float]] = [
    ("autograd", "dopri5", 1e-5),  # the preset before this benchmark
    ("forward", "dopri5", 1e-5),
    ("forward", "dopri5", 1e-4),
    ("forward", "dopri5", 1e-3),
    ("forward", "dopri5", 1e-2),
    ("forward", "bosh3", 1e-3),
]


def toy_data(dataset: str, split_seed: int) -> SemiSupervisedData:
    """Training set with the label split of ``split_seed``; the validation set as 'test'."""
    from scnf.data.splits import make_label_split

    x, y = make_toy(dataset, "train")
    lab = torch.as_tensor(make_label_split(y, 5, split_seed))
    unl = torch.ones(x.shape[0], dtype=torch.bool)
    unl[lab] = False
    xv, yv = make_toy(dataset, "val")
    return SemiSupervisedData(x[lab], y[lab], x[unl], xv, yv, image=False)


class NFECounter:
    """Counts calls of a module (a forward hook); reset before each solve."""

    def __init__(self, module: torch.nn.Module):
        self.n = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.n += 1


def run_setting(
    base: scnf.SCNF, data: SemiSupervisedData, t: TrainConfig, setting: tuple[str, str, float]
) -> dict[str, Any]:
    divergence, method, tol = setting
    model = copy.deepcopy(base)
    flow = model.flow
    flow.dynamics.divergence = divergence
    flow.train_method, flow.train_atol, flow.train_rtol = method, tol, tol
    counter = NFECounter(flow.dynamics)
    opt = make_optimizer(model, t)
    sched = make_scheduler(opt, t, t.max_steps)
    sampler = BatchSampler(data, t.batch_size, t.labelled_fraction, seed=0)
    nfe, times, cpu_times = [], [], []
    model.train()
    for _ in range(t.max_steps):
        x, y = sampler.sample()
        start, cpu = time.perf_counter(), time.process_time()
        counter.n = 0
        terms = semi_supervised_objective(model, x, y, "sgd")
        nfe.append(counter.n)
        opt.zero_grad(set_to_none=True)
        terms.loss.backward()
        opt.step()
        sched.step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)
    model.eval()
    counter.n = 0
    start = time.perf_counter()
    err, ll = score(model, data, data.x_test, data.y_test, data.x_test.shape[0])
    eval_s = time.perf_counter() - start
    skip = len(times) // 10  # drop the first tenth (allocator warm-up)
    warm, warm_cpu = times[skip:], cpu_times[skip:]
    return {
        "divergence": divergence,
        "train_method": method,
        "train_tol": tol,
        "nfe_per_train_solve": sum(nfe) / len(nfe),
        "nfe_per_train_solve_last50": sum(nfe[-50:]) / len(nfe[-50:]),
        "s_per_step": sum(warm) / len(warm),
        "cpu_s_per_step": sum(warm_cpu) / len(warm_cpu),  # robust to other load on the machine
        "train_nll_last": float(terms.nll),
        "val_nll": -ll,
        "val_error": err,
        "eval_nfe": counter.n,
        "eval_s_10k": eval_s,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="moons")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--out", default="results/bench/toy-speed.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t = TrainConfig(
        batch_size=args.batch_size,
        labelled_fraction=1 / 3,
        max_steps=args.steps,
        optimizer="adam",
        lr=args.lr,
        weight_decay=1e-5,
        schedule="constant",
        progress=False,
    )
    data = toy_data(args.dataset, 0)
    torch.manual_seed(0)
    base = scnf.make_model("toy-ffjord-glow")
    rows = []
    start = time.perf_counter()
    print(
        f"{'divergence':>10} {'method':>7} {'tol':>7} {'NFE/solve':>9} {'s/step':>7} "
        f"{'cpu s':>6} "
        f"{'val NLL':>8} {'val err%':>8} {'eval NFE':>8}",
        flush=True,
    )
    for setting in SETTINGS:
        r = run_setting(base, data, t, setting)
        rows.append(r)
        print(
            f"{r['divergence']:>10} {r['train_method']:>7} {r['train_tol']:>7.0e} "
            f"{r['nfe_per_train_solve']:>9.1f} {r['s_per_step']:>7.3f} "
            f"{r['cpu_s_per_step']:>6.3f} "
            f"{r['val_nll']:>8.4f} "
            f"{r['val_error']:>8.2f} {r['eval_nfe']:>8d}",
            flush=True,
        )
    settings = {
        "dataset": args.dataset,
        "preset": "toy-ffjord-glow",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "threads": 1,
        "eval": "dopri5 atol=rtol=1e-5 on the 10,000 validation points",
    }
    write_json(
        args.out,
        {
            "settings": settings,
            "rows": rows,
            "provenance": collect(settings, time.perf_counter() - start),
        },
    )
    print(json.dumps({"written": args.out}))


if __name__ == "__main__":
    main()
