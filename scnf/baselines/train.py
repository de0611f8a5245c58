"""Training and evaluation of the baselines: M1 once, then M2 or M1+M2 per label split.

Same engineering as ``scnf.train.loop``: the data live in memory as float tensors, every
random draw (batch indices, binarisation, reparametrisation noise) comes from one
``torch.Generator`` whose state is checkpointed, so a killed run resumes to bit-identical
weights; checkpoints are atomic and written every ``checkpoint_every`` steps; a changed protocol
moves the old run aside instead of resuming it; a non-finite loss or weight stops the run
before anything is saved. Test error is argmax q(y|x) on the test images (grey levels in
[0, 1] for M2, M1's posterior means for M1+M2).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml
from torch import Tensor
from tqdm import tqdm

from scnf.baselines.config import (
    M1Config,
    M1M2Config,
    M2Config,
    load_m1_config,
    what_is_trained,
)
from scnf.baselines.graphed import FastOptions, fit_fast
from scnf.baselines.m1 import M1
from scnf.baselines.m2 import M2
from scnf.data import load_mnist, load_split
from scnf.train.batches import heldout_index
from scnf.train.checkpoint import atomic_save, config_changes, load_checkpoint, move_aside
from scnf.train.config import NOT_PROTOCOL_KEYS, protocol_view

CHECKPOINT, FINAL_MODEL, RUN_CONFIG = "checkpoint.pt", "model.pt", "config.yaml"
TRAIN_LOG, METRICS = "train_log.jsonl", "metrics.json"
TRAIN_METRICS = "train_metrics.json"  # steps and training time, as the SCNF runs write them
TRAIN_KEYS = ("steps", "epochs", "train_wall_s", "train_cpu_s")
EVAL_SEED = 20190505  # binarisation noise of M1's test ELBO (the same for every run)
MONITOR_SIZE = 10_000  # unlabelled training images scored by the held-out monitor
PRESETS = {"m1": "kingma2014-m1", "m2": "kingma2014-m2", "m1m2": "kingma2014-m1m2"}

StepFn = Callable[[], tuple[Tensor, dict[str, Tensor]]]


# --- data ----------------------------------------------------------------------------------


def _pixels(images: Tensor) -> Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 784) grey levels in [0, 1]."""
    return images.reshape(images.shape[0], -1).float() / 255.0


@dataclass
class SemiData:
    """Inputs of M2: labelled and unlabelled training rows, the test set."""

    x_lab: Tensor
    y_lab: Tensor
    x_unl: Tensor
    y_unl: Tensor  # true labels of the unlabelled rows: a training monitor only, never trained on
    x_test: Tensor
    y_test: Tensor


def load_semi_pixels(cfg: M2Config) -> SemiData:
    """MNIST pixels split by ``cfg.split``; labelled objects are always kept under num_train."""
    check_split_file(cfg.split)
    x_train, y_train = load_mnist(cfg.data.dir, train=True, download=cfg.data.download)
    x_test, y_test = load_mnist(cfg.data.dir, train=False, download=cfg.data.download)
    split = load_split(cfg.split, y_train)  # also checks that the split fits these labels
    labelled = torch.as_tensor(split["labelled"], dtype=torch.long)
    is_unl = torch.ones(x_train.shape[0], dtype=torch.bool)
    is_unl[labelled] = False
    if cfg.data.num_train is not None:
        is_unl[cfg.data.num_train :] = False
    if cfg.data.num_test is not None:
        x_test, y_test = x_test[: cfg.data.num_test], y_test[: cfg.data.num_test]
    x = _pixels(x_train)
    return SemiData(
        x[labelled], y_train[labelled], x[is_unl], y_train[is_unl], _pixels(x_test), y_test
    )


def check_split_file(path: str | Path) -> None:
    """Refuse a missing, damaged or non-MNIST split file before any data is read."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"split file {path} does not exist: write it with "
            "`python -m scnf splits --dataset mnist --seed S --out FILE`"
        )
    split = load_split(path)
    if split["dataset"] != "mnist":
        raise ValueError(f"split file {path} is for {split['dataset']!r}, not 'mnist'")


# --- the shared loop -------------------------------------------------------------------------


class _Interrupt(RuntimeError):
    """Raised by the test hook ``stop_after_step`` to simulate a killed job."""


SCHEDULE_KEYS = ("epochs", "max_steps")  # train keys that only set how long a run trains


def _only_schedule_differs(old: Any, new: dict[str, Any]) -> bool:
    """True when protocol views ``new`` and ``old`` are equal but for ``SCHEDULE_KEYS``."""
    if not isinstance(old, dict) or not isinstance(old.get("train"), dict):
        return False

    def without_schedule(d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "train": {k: v for k, v in d["train"].items() if k not in SCHEDULE_KEYS}}

    return without_schedule(old) == without_schedule(new)


def _prepare_out_dir(cfg: M1Config | M2Config, out_dir: Path, total_steps: int) -> None:
    """Create ``out_dir``; a checkpoint of a different *protocol* moves to ``superseded-<time>/``.

    As for the SCNF runs (``scnf.train.config.protocol_view``), keys outside the protocol (data
    location, ``checkpoint_every``, progress bar, name) may change: the run resumes. A new
    schedule length (``SCHEDULE_KEYS``) keeps a checkpoint that has not passed its end:
    the baselines train with Adam at a constant step size, so nothing in a step depends on
    the total, and continuing from the checkpoint gives the weights of an uninterrupted run of
    the new length (a finished run can be lengthened, a running one shortened). Any other
    change moves the old run aside and prints the changed keys. Called after the data are read.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = out_dir / RUN_CONFIG
    new = what_is_trained(cfg)
    if (out_dir / CHECKPOINT).is_file():
        try:
            old = yaml.safe_load(cfg_path.read_text())
        except (OSError, yaml.YAMLError):
            old = None
        old_p = protocol_view(old) if isinstance(old, dict) else old
        new_p = protocol_view(new)
        if old_p != new_p:
            step = None
            if _only_schedule_differs(old_p, new_p):
                step = load_checkpoint(out_dir / CHECKPOINT, torch.device("cpu"))["step"]
            if step is not None and step <= total_steps:
                print(
                    f"schedule changed to {total_steps} steps: {out_dir} continues from its "
                    f"checkpoint at step {step}",
                    file=sys.stderr,
                )
            else:
                names = (CHECKPOINT, RUN_CONFIG, TRAIN_LOG, FINAL_MODEL, METRICS, TRAIN_METRICS)
                move_aside(out_dir, names, config_changes(old_p, new_p))
    cfg_path.write_text(yaml.safe_dump(new, sort_keys=False))


def _fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: StepFn,
    generator: torch.Generator,
    total_steps: int,
    steps_per_epoch: int,
    checkpoint_every: int,
    out_dir: Path,
    progress: bool,
    desc: str,
    stop_after_step: int | None,
    monitor: Callable[[], dict[str, float]] | None = None,
) -> tuple[list[dict[str, Any]], float, float]:
    """Run (or resume) ``total_steps`` optimiser steps; return the epoch log, the wall time and
    the process CPU time (both summed over every attempt of a resumed run).

    ``monitor`` adds ``mon_*`` entries to each epoch's log line (no test data: the labelled
    training objects only).
    """
    from scnf.train.loop import NonFiniteLossError

    step, log, acc, elapsed, cpu_elapsed = 0, [], {}, 0.0, 0.0
    state = load_checkpoint(out_dir / CHECKPOINT, torch.device("cpu"))
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step, log, acc, elapsed = state["step"], state["log"], state["acc"], state["elapsed"]
        cpu_elapsed = state.get("cpu_elapsed", 0.0)  # absent from checkpoints before it was kept
        print(f"resuming {out_dir} from step {step}/{total_steps}", file=sys.stderr)
    (out_dir / TRAIN_LOG).write_text("".join(json.dumps(e) + "\n" for e in log))
    bar = tqdm(
        total=total_steps,
        initial=step,
        disable=not progress,
        mininterval=1.0,
        file=sys.stderr,
        dynamic_ncols=True,
        desc=desc,
    )
    start = time.perf_counter() - elapsed
    cpu_start = time.process_time() - cpu_elapsed  # CPU seconds of this process, all threads
    epoch_start = time.perf_counter() - acc.get("seconds", 0.0)
    model.train()
    while step < total_steps:
        loss, stats = step_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        for k, v in {"loss": loss.detach(), **stats}.items():
            acc[k] = acc.get(k, 0.0) + v
        acc["steps"] = acc.get("steps", 0) + 1
        bar.update(1)
        if step % steps_per_epoch == 0 or step == total_steps:
            n = acc.pop("steps")
            entry = {"epoch": math.ceil(step / steps_per_epoch), "step": step}
            skip = ("seconds", "correct", "labelled")
            entry |= {k: float(v) / n for k, v in acc.items() if k not in skip}
            if "correct" in acc:
                entry["train_acc"] = float(acc["correct"]) / max(float(acc["labelled"]), 1.0)
            entry["seconds"] = time.perf_counter() - epoch_start
            if monitor is not None:
                entry |= monitor()
            if not math.isfinite(entry["loss"]):
                raise NonFiniteLossError(
                    f"non-finite loss by step {step}; stopping without saving. The last good "
                    f"checkpoint is {out_dir / CHECKPOINT} (if any). Lower the learning rate."
                )
            log.append(entry)
            with open(out_dir / TRAIN_LOG, "a") as fh:
                fh.write(json.dumps(entry) + "\n")
            bar.set_postfix(loss=f"{entry['loss']:.3f}")
            acc, epoch_start = {}, time.perf_counter()
        if step % checkpoint_every == 0 or step == total_steps:
            if not all(bool(p.isfinite().all()) for p in model.parameters()):
                raise NonFiniteLossError(f"non-finite weights by step {step}; not saved")
            atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "step": step,
                    "log": log,
                    "acc": {**acc, "seconds": time.perf_counter() - epoch_start},
                    "elapsed": time.perf_counter() - start,
                    "cpu_elapsed": time.process_time() - cpu_start,
                },
                out_dir / CHECKPOINT,
            )
        if stop_after_step is not None and step >= stop_after_step:
            raise _Interrupt(f"stopped after step {step} (test hook)")
    bar.close()
    return log, time.perf_counter() - start, time.process_time() - cpu_start


class Trained(NamedTuple):
    """What ``_train`` returns."""

    model: torch.nn.Module  # on the CPU
    steps: int  # the steps taken (a fast run may stop early to keep its budget)
    log: list[dict[str, Any]]  # one entry per epoch
    wall_s: float  # training wall time, every attempt of a resumed run included
    cpu_s: float  # process CPU time of training, likewise
    fast_run: dict[str, Any] | None  # the fast (graphed GPU) run's record


def _train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: StepFn,
    generator: torch.Generator | None,
    total_steps: int,
    steps_per_epoch: int,
    t: Any,
    out_dir: Path,
    desc: str,
    stop_after_step: int | None,
    fast: FastOptions | None,
    monitor: Callable[[], dict[str, float]] | None = None,
) -> Trained:
    """Train by the checkpointed loop (``_fit``) or, with ``fast``, the graphed GPU loop."""
    if fast is None:
        assert generator is not None, "the checkpointed loop draws from a CPU generator"
        log, wall, cpu = _fit(
            model, optimizer, step_fn, generator, total_steps, steps_per_epoch,
            t.checkpoint_every, out_dir, t.progress, desc, stop_after_step, monitor,
        )  # fmt: skip
        return Trained(model, total_steps, log, wall, cpu, None)
    _no_checkpoint(out_dir)
    cpu_start = time.process_time()
    log, wall, run = fit_fast(
        model, optimizer, step_fn, total_steps, steps_per_epoch, out_dir, fast, monitor
    )
    return Trained(model.cpu(), run["steps"], log, wall, time.process_time() - cpu_start, run)


def _adam(model: torch.nn.Module, t: Any, fast: FastOptions | None = None) -> torch.optim.Adam:
    extra = {"capturable": True} if fast is not None and fast.graphed() else {}
    return torch.optim.Adam(
        model.parameters(), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay, **extra
    )


def _device(fast: FastOptions | None) -> torch.device:
    """The CPU, or ``fast.device`` for the fast path (``scnf.baselines.graphed``)."""
    return torch.device("cpu") if fast is None else torch.device(fast.device)


def _generator(seed: int, dev: torch.device) -> torch.Generator | None:
    """The run's one source of random draws: a CPU generator, or on CUDA the device's default
    generator (None), the one a CUDA graph replays safely."""
    if dev.type == "cpu":
        return torch.Generator().manual_seed(seed)
    torch.cuda.manual_seed(seed)
    return None


def _no_checkpoint(out_dir: Path) -> None:
    """The fast path trains from scratch in a fresh directory; it never resumes."""
    if (out_dir / CHECKPOINT).is_file():
        raise ValueError(f"{out_dir / CHECKPOINT} exists: the fast path trains from scratch")


def _total_steps(epochs: int, steps_per_epoch: int, max_steps: int | None) -> int:
    total = epochs * steps_per_epoch
    return total if max_steps is None else min(total, max_steps)


def _run_block(
    model: str, seed: int, clf_weight: float | None, protocol: dict[str, Any]
) -> dict[str, Any]:
    """The keys that place a run in the tables, as ``scnf.evaluate.run_summary`` gives them.

    ``clf_weight`` is the setting ``alpha_per_n`` (Kingma et al.'s alpha / N, 0.1), not alpha
    itself, which depends on the number of training objects and is recorded beside it.
    """
    return {
        "dataset": "mnist",
        "preset": PRESETS[model],
        "f": None,
        "h": None,
        "mode": "vi",
        "clf_weight": clf_weight,
        "zf_dim": None,
        "seed": seed,
        "protocol": protocol,
    }


# --- M1 ---------------------------------------------------------------------------------------


def build_m1(cfg: M1Config) -> M1:
    return M1(784, cfg.train.hidden, cfg.train.latent)


@torch.no_grad()
def m1_test_elbo(model: M1, x: Tensor, batch_size: int) -> float:
    """Mean one-sample ELBO (nats) of ``x`` binarised with fixed noise (EVAL_SEED)."""
    g = torch.Generator().manual_seed(EVAL_SEED)
    total = 0.0
    for i in range(0, x.shape[0], batch_size):
        xb = torch.bernoulli(x[i : i + batch_size], generator=g)
        eps = torch.randn(xb.shape[0], model.z_dim, generator=g)
        total += float(model.elbo(xb, eps).double().sum())
    return total / x.shape[0]


def train_m1(
    cfg: M1Config,
    out_dir: str | Path,
    stop_after_step: int | None = None,
    fast: FastOptions | None = None,
) -> dict[str, Any]:
    """Train M1 on the (first ``num_train``) training images without labels; write metrics.json.

    ``fast``: train on ``fast.device`` with ``scnf.baselines.graphed`` (from scratch, time-boxed;
    ``metrics["fast"]`` records how far it got); the evaluation runs on the CPU either way.
    """
    from scnf.provenance import collect, write_json

    t, out_dir = cfg.train, Path(out_dir)
    dev = _device(fast)
    images, _ = load_mnist(cfg.data.dir, train=True, download=cfg.data.download)
    test, _ = load_mnist(cfg.data.dir, train=False, download=cfg.data.download)
    x = _pixels(images[: cfg.data.num_train]).to(dev)
    x_test = _pixels(test[: cfg.data.num_test])
    steps_per_epoch = math.ceil(x.shape[0] / t.batch_size)
    total = _total_steps(t.epochs, steps_per_epoch, t.max_steps)
    _prepare_out_dir(cfg, out_dir, total)
    torch.manual_seed(cfg.seed)
    model = build_m1(cfg).to(dev)
    optimizer = _adam(model, t, fast)
    g = _generator(cfg.seed + 1, dev)

    def step() -> tuple[Tensor, dict[str, Tensor]]:
        idx = torch.randint(x.shape[0], (t.batch_size,), generator=g, device=dev)
        xb = torch.bernoulli(x[idx], generator=g)  # dynamic binarisation
        eps = torch.randn(t.batch_size, t.latent, generator=g, device=dev)
        elbo = model.elbo(xb, eps).mean()
        return -elbo, {"elbo": elbo.detach()}

    model, total, log, wall, cpu, run = _train(
        model, optimizer, step, g, total, steps_per_epoch, t, out_dir,
        cfg.name or "baseline-m1", stop_after_step, fast,
    )  # fmt: skip
    atomic_save(model.state_dict(), out_dir / FINAL_MODEL)
    model.eval()
    protocol = {
        **_train_protocol(t, "model.", "train."),
        "model.name": "m1",
        "model.likelihood": "bernoulli (dynamic binarisation)",
        "data.num_train": cfg.data.num_train,
        "data.num_test": cfg.data.num_test,
    }
    result = {
        "run": _run_block("m1", cfg.seed, None, protocol),
        "test_elbo": m1_test_elbo(model, x_test, cfg.eval_batch_size),
        "final_train_elbo": log[-1]["elbo"] if log else None,
        "num_test": int(x_test.shape[0]),
        "steps": total,
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "provenance": collect(cfg.to_dict(), wall),
    }
    if run is not None:
        result["fast"] = run
    write_json(out_dir / METRICS, result)
    write_json(out_dir / TRAIN_METRICS, {k: result[k] for k in TRAIN_KEYS if k in result})
    return result


def load_m1(run_dir: str | Path) -> tuple[M1, M1Config]:
    """The final M1 of a finished ``baseline-m1`` run (eval mode) and its config."""
    run_dir = Path(run_dir)
    weights = run_dir / FINAL_MODEL
    if not weights.is_file():
        raise FileNotFoundError(
            f"{weights} is missing: has `scnf baseline-m1 --out {run_dir}` finished?"
        )
    cfg = load_m1_config(run_dir / RUN_CONFIG)
    model = build_m1(cfg)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval(), cfg


@torch.no_grad()
def m1_features(model: M1, x: Tensor, batch_size: int = 2000) -> tuple[Tensor, Tensor]:
    """Mean and log-variance of M1's q(z1 | x) for grey-level images ``x``."""
    parts = [model.encode(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


# --- M2 and M1+M2 -----------------------------------------------------------------------------


def train_m2(
    cfg: M2Config,
    out_dir: str | Path,
    stop_after_step: int | None = None,
    fast: FastOptions | None = None,
) -> dict[str, Any]:
    """Train M2 (raw pixels) or M1+M2 (M1's latent) on one label split; write metrics.json.

    ``fast``: as in ``train_m1``: training on ``fast.device``, evaluation on the CPU.
    """
    from scnf.provenance import collect, write_json

    t, out_dir = cfg.train, Path(out_dir)
    dev = _device(fast)
    stacked = isinstance(cfg, M1M2Config)
    check_split_file(cfg.split)
    if stacked:
        m1, m1_cfg = load_m1(cfg.m1_run)  # before reading MNIST: a missing M1 fails fast
    data = load_semi_pixels(cfg)
    n_lab, n_unl = data.x_lab.shape[0], data.x_unl.shape[0]
    extra: dict[str, Any] = {}
    if stacked:
        images, _ = load_mnist(cfg.data.dir, train=True, download=cfg.data.download)
        ref_mu, _ = m1_features(m1, _pixels(images[: cfg.data.num_train]))
        keep = ref_mu.std(0) > t.active_std  # split-independent: every seed keeps the same dims
        if not bool(keep.any()):
            raise ValueError(f"no M1 latent dimension has a posterior-mean std > {t.active_std}")
        feats = {k: m1_features(m1, getattr(data, k)) for k in ("x_lab", "x_unl", "x_test")}
        feats = {k: (mu[:, keep], lv[:, keep]) for k, (mu, lv) in feats.items()}
        # M1's settings are part of M1+M2's protocol: a changed M1 is a changed baseline.
        extra = {
            **_train_protocol(m1_cfg.train, "m1.model.", "m1.train."),
            "m1.data.num_train": m1_cfg.data.num_train,
            "m1.seed": m1_cfg.seed,
            "model.m1_dims_kept": int(keep.sum()),
        }
        x_dim, likelihood = int(keep.sum()), "gaussian"
    else:
        x_dim, likelihood = 784, "bernoulli"

    torch.manual_seed(cfg.seed)
    model = M2(x_dim, t.hidden, t.latent, 10, likelihood).to(dev)
    optimizer = _adam(model, t, fast)
    g = _generator(cfg.seed + 1, dev)
    alpha = t.alpha_per_n * (n_lab + n_unl)
    steps_per_epoch = math.ceil(n_unl / t.unlabelled_batch)
    total = _total_steps(t.epochs, steps_per_epoch, t.max_steps)
    _prepare_out_dir(cfg, out_dir, total)
    bl, bu = t.labelled_batch, t.unlabelled_batch
    # What training reads, on its device (the same tensors on the CPU).
    on = {k: getattr(data, k).to(dev) for k in ("x_lab", "y_lab", "x_unl", "y_unl")}
    feats_on = {k: (mu.to(dev), lv.to(dev)) for k, (mu, lv) in feats.items()} if stacked else {}
    labelled = torch.full((), float(bl), device=dev)

    def inputs(key: str, idx: Tensor) -> Tensor:
        if not stacked:
            return torch.bernoulli(on[key][idx], generator=g)  # dynamic binarisation
        mu, lv = feats_on[key][0][idx], feats_on[key][1][idx]
        if t.features == "mean":
            return mu
        return mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=g, device=dev)

    held = heldout_index(n_unl, MONITOR_SIZE).to(dev)
    x_held = feats_on["x_unl"][0][held] if stacked else on["x_unl"][held]
    y_held = on["y_unl"][held]

    def monitor() -> dict[str, float]:
        x = feats_on["x_lab"][0] if stacked else on["x_lab"]
        return {
            "mon_labelled_error": classification_error(model, x, on["y_lab"], 1000),
            "mon_heldout_error": classification_error(model, x_held, y_held, 1000),
        }

    def step() -> tuple[Tensor, dict[str, Tensor]]:
        il = torch.randint(n_lab, (bl,), generator=g, device=dev)
        iu = torch.randint(n_unl, (bu,), generator=g, device=dev)
        x_l, x_u = inputs("x_lab", il), inputs("x_unl", iu)
        eps_l = torch.randn(bl, t.latent, generator=g, device=dev)
        eps_u = torch.randn(bu, 10, t.latent, generator=g, device=dev)
        terms = model.objective(x_l, on["y_lab"][il], x_u, n_lab, n_unl, alpha, eps_l, eps_u)
        stats = {
            "bound": terms.bound,
            "clf": terms.clf,
            "correct": terms.correct,
            "labelled": labelled,
        }
        return terms.loss, stats

    model, total, log, wall, cpu, run = _train(
        model, optimizer, step, g, total, steps_per_epoch, t, out_dir,
        cfg.name or f"baseline-{cfg.model}", stop_after_step, fast, monitor,
    )  # fmt: skip
    atomic_save(model.state_dict(), out_dir / FINAL_MODEL)
    model.eval()
    if stacked:
        x_test, x_lab = feats["x_test"][0], feats["x_lab"][0]
    else:
        x_test, x_lab = data.x_test, data.x_lab
    protocol = {
        **_train_protocol(t, "model.", "train."),
        "model.name": cfg.model,
        "model.x_dim": x_dim,
        "model.likelihood": "gaussian" if stacked else "bernoulli (dynamic binarisation)",
        # Settings only: sizes and step counts that follow from a seed's split (the labelled
        # images are kept beyond a num_train subset) are results, in the record below.
        "data.num_train": cfg.data.num_train,
        "data.num_test": cfg.data.num_test,
        **extra,
    }
    result = {
        "run": _run_block(cfg.model, cfg.seed, t.alpha_per_n, protocol),
        "alpha": alpha,  # alpha_per_n x the number of training objects
        "num_unlabelled": n_unl,
        "test_error": classification_error(model, x_test, data.y_test, cfg.eval_batch_size),
        "train_error": classification_error(model, x_lab, data.y_lab, cfg.eval_batch_size),
        "test_nll": None,  # a VAE bound on binarised pixels is not comparable with the flows'
        "test_bpd": None,
        "num_test": int(x_test.shape[0]),
        "num_labelled": n_lab,
        "steps": total,
        "epochs": total / steps_per_epoch,
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "final_train_bound": log[-1]["bound"] if log else None,
        "provenance": collect(cfg.to_dict(), wall),
    }
    if run is not None:
        result["fast"] = run
    write_json(out_dir / METRICS, result)
    write_json(out_dir / TRAIN_METRICS, {k: result[k] for k in TRAIN_KEYS if k in result})
    return result


@torch.no_grad()
def classification_error(model: M2, x: Tensor, y: Tensor, batch_size: int) -> float:
    """Test error in %: argmax q(y | x) against the labels."""
    wrong = sum(
        int((model.classify(x[i : i + batch_size]).argmax(-1) != y[i : i + batch_size]).sum())
        for i in range(0, x.shape[0], batch_size)
    )
    return 100.0 * wrong / x.shape[0]


_MODEL_KEYS = ("hidden", "latent")  # architecture; every other result-changing key is training


def _train_protocol(t: Any, model_prefix: str, train_prefix: str) -> dict[str, Any]:
    """A ``train`` section as flat dotted keys, like ``scnf.evaluate.run_protocol``."""
    out: dict[str, Any] = {f"{train_prefix}optimizer": "adam"}
    for k, v in sorted(vars(t).items()):
        if k not in NOT_PROTOCOL_KEYS:
            out[(model_prefix if k in _MODEL_KEYS else train_prefix) + k] = v
    return out
