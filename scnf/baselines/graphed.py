"""The baselines' training loop for a GPU: the whole step as one CUDA graph, and a time box.

Kingma et al.'s models are small MLPs, so on an H200 a step is a few hundred small kernels
whose launches, not their arithmetic, set the time, and their own schedule (3,000 epochs) is
22-41 core-hours per M2 seed on a CPU. Captured once as a CUDA graph, a step (batch draw,
binarisation, noise, forward, backward, Adam, the epoch's running sums) replays with one launch
and no host sync; the host reads the sums once per epoch. On a CPU the same loop runs eagerly
and gives exactly the weights of ``scnf.baselines.train._fit`` (tested), so its logic is
tested without a GPU.

The time box (``FastOptions.deadline``): once ``probe_s`` seconds have passed after the first
epoch (warm-up and capture), the rate so far projects the run's end; a run that would end past
the deadline minus ``reserve_s`` stops there (``projected``), and any run stops at the last
epoch boundary before it (``deadline``). A stopped run has ``complete: false``: its caller
records the steps done, never the schedule it was given.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

StepFn = Callable[[], tuple[Tensor, dict[str, Tensor]]]


@dataclass
class FastOptions:
    device: str = "cuda"
    graph: bool = True  # capture the step as a CUDA graph (CUDA only; eager elsewhere)
    deadline: float | None = None  # time.perf_counter() by which training must have stopped
    probe_s: float = 10.0  # training seconds after the first epoch before the run is judged
    reserve_s: float = 20.0  # kept after training for the final evaluation and saving
    warmup_steps: int = 3  # eager steps before the capture (real training steps)

    def graphed(self) -> bool:
        return self.graph and torch.device(self.device).type == "cuda"


class _Stepper:
    """One optimiser step, eager or replayed from a CUDA graph; the epoch's sums stay on the
    device."""

    def __init__(self, optimizer: torch.optim.Optimizer, step_fn: StepFn, opts: FastOptions):
        self.optimizer, self.step_fn, self.opts = optimizer, step_fn, opts
        self.sums: dict[str, Tensor] | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.want_graph = opts.graphed()
        self.eager_steps = 0
        self.path = "cuda-graph" if self.want_graph else f"eager-{torch.device(opts.device).type}"
        self.capture_error: str | None = None

    def _add(self, loss: Tensor, stats: dict[str, Tensor]) -> None:
        values = {"loss": loss.detach(), **stats}
        if self.sums is None:
            self.sums = {k: v.detach().float().clone() for k, v in values.items()}
        else:
            for k, v in values.items():
                self.sums[k].add_(v)

    def _eager(self) -> None:
        loss, stats = self.step_fn()  # the order of scnf.baselines.train._fit
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._add(loss, stats)

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # backward allocates from the graph's pool
        try:
            with torch.cuda.graph(graph):
                loss, stats = self.step_fn()
                loss.backward()
                self.optimizer.step()
                self._add(loss, stats)
        except RuntimeError as err:  # recorded; training goes on eagerly
            self.want_graph, self.path = False, "eager-cuda (capture failed)"
            self.capture_error = str(err)[-2000:]
            self.optimizer.zero_grad(set_to_none=True)
            return
        self.graph = graph

    def run(self, n: int) -> None:
        """``n`` optimiser steps."""
        done = 0
        if self.want_graph and self.graph is None:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                while done < min(n, self.opts.warmup_steps - self.eager_steps):
                    self._eager()
                    done += 1
                    self.eager_steps += 1
            torch.cuda.current_stream().wait_stream(side)
            if self.eager_steps >= self.opts.warmup_steps:
                self._capture()
        for _ in range(n - done):
            if self.graph is not None:
                self.graph.replay()
            else:
                self._eager()

    def collect(self) -> dict[str, float]:
        """The sums since the last call (host sync), then zeroed in place."""
        assert self.sums is not None
        out = {k: float(v) for k, v in self.sums.items()}
        for v in self.sums.values():
            v.zero_()
        return out


def fit_fast(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: StepFn,
    total_steps: int,
    steps_per_epoch: int,
    out_dir: Path,
    opts: FastOptions,
    monitor: Callable[[], dict[str, float]] | None = None,
) -> tuple[list[dict[str, Any]], float, dict[str, Any]]:
    """Train from scratch for at most ``total_steps``; return the epoch log (also appended to
    ``out_dir/train_log.jsonl``), the wall time and the run's record (``complete``, ``steps``,
    ``reason``, ``steps_per_s``, ``path``)."""
    from scnf.train.loop import NonFiniteLossError

    log_file = Path(out_dir) / "train_log.jsonl"
    log_file.write_text("")
    stepper = _Stepper(optimizer, step_fn, opts)
    log: list[dict[str, Any]] = []
    step, reason, probe, rate = 0, None, None, None
    judged = False
    start = epoch_start = time.perf_counter()
    model.train()
    while step < total_steps:
        n = min(steps_per_epoch - step % steps_per_epoch, total_steps - step)
        stepper.run(n)
        step += n
        sums = stepper.collect()
        entry: dict[str, Any] = {"epoch": math.ceil(step / steps_per_epoch), "step": step}
        entry |= {k: v / n for k, v in sums.items() if k not in ("correct", "labelled")}
        if "correct" in sums:
            entry["train_acc"] = sums["correct"] / max(sums["labelled"], 1.0)
        if monitor is not None:
            entry |= monitor()
        now = time.perf_counter()
        entry["seconds"] = now - epoch_start
        if not math.isfinite(entry["loss"]):
            raise NonFiniteLossError(f"non-finite loss by step {step}; nothing saved")
        log.append(entry)
        with log_file.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")
        epoch_start = now
        if probe is None:
            probe = (now, step)  # after warm-up and capture: the rate is measured from here
        elif step > probe[1]:
            rate = (step - probe[1]) / max(now - probe[0], 1e-9)
        if opts.deadline is None or step >= total_steps:
            continue
        end = opts.deadline - opts.reserve_s
        if rate is not None and not judged and now - probe[0] >= opts.probe_s:
            judged = True
            if now + (total_steps - step) / rate > end:
                reason = (
                    f"projected: {(total_steps - step) / rate:.0f} s more at {rate:.0f} steps/s, "
                    f"{end - now:.0f} s left"
                )
                break
        if now + 1.5 * entry["seconds"] > end:
            reason = f"deadline: the next epoch would end past it ({end - now:.0f} s left)"
            break
    wall = time.perf_counter() - start
    if not all(bool(p.isfinite().all()) for p in model.parameters()):
        raise NonFiniteLossError(f"non-finite weights by step {step}; nothing saved")
    record = {
        "complete": step >= total_steps,
        "steps": step,
        "total_steps": total_steps,
        "reason": reason,
        "steps_per_s": rate,
        "ms_per_step": None if rate is None else 1000.0 / rate,
        "path": stepper.path,
        "capture_error": stepper.capture_error,
        "options": asdict(opts),
    }
    return log, wall, record
