"""The training loop: mixed labelled/unlabelled batches, EM-SGD's E-steps, checkpoints, logs.

``train(cfg, out_dir)`` is idempotent: if ``out_dir`` holds a checkpoint of the
same config, training resumes from it (model, optimiser, schedule, sampler RNG,
epoch accumulators, EM-SGD's stored responsibilities) and ends with the same
parameters as an uninterrupted run. A non-finite loss, weight or responsibility
stops the run before anything is saved, so the last checkpoint stays the last good one.

``train_log.jsonl`` gets one line per epoch; monitored epochs (every
``train.monitor_every`` epochs and always the last) add the ``mon_*`` keys of
``scnf.evaluate.monitor_model``, computed on the labelled objects and a held-out set,
never on the test set, which only the final ``evaluate_model`` reads.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from scnf.device import check_cpu_fallback, configure_precision, resolve_device
from scnf.evaluate import evaluate_model, monitor_model, run_summary
from scnf.train.batches import BatchSampler, load_data, planned_num_train
from scnf.train.checkpoint import (
    CHECKPOINT,
    FINAL_MODEL,
    RUN_CONFIG,
    TRAIN_LOG,
    TRAIN_METRICS,
    atomic_save,
    build_model,
    config_changes,
    load_checkpoint,
    move_aside,
)
from scnf.train.config import RunConfig, load_run_config, protocol_view
from scnf.train.em import (
    compiled_posterior,
    e_step,
    hold_out_closed_form_parameters,
    uses_closed_form_m_step,
)
from scnf.train.objective import semi_supervised_objective
from scnf.train.optim import make_optimizer, make_scheduler


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss or weight; the last checkpoint is kept."""


class _Interrupt(RuntimeError):
    """Raised by the test hook ``stop_after_step`` to simulate a killed job."""


def _prepare_out_dir(cfg: RunConfig, out_dir: Path) -> None:
    """Create ``out_dir``; a checkpoint of a different *protocol* is set aside, not resumed.

    Keys outside the protocol (``scnf.train.config.protocol_view``: device, data location,
    checkpoint and monitor intervals, compilation, progress bar, name) may change: the run
    resumes under the new config. Otherwise nothing is deleted: the stale checkpoint, config
    and log move to ``out_dir/superseded-<UTC time>/``, the changed keys are printed, and
    training starts afresh. Called only after the config and the data have been checked.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = out_dir / RUN_CONFIG
    if (out_dir / CHECKPOINT).is_file():
        try:
            old: Any = _what_is_trained(load_run_config(cfg_path))
        except (ValueError, OSError) as err:
            old = f"{cfg_path}: {err}"
        new = _what_is_trained(cfg)
        if old != new:
            names = (CHECKPOINT, RUN_CONFIG, TRAIN_LOG, FINAL_MODEL, TRAIN_METRICS)
            move_aside(out_dir, names, config_changes(old, new))
    cfg_path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _what_is_trained(cfg: RunConfig) -> dict[str, Any]:
    """The config's protocol: what decides the trained weights (``protocol_view``)."""
    return protocol_view(cfg.to_dict())


def train(
    cfg: RunConfig,
    out_dir: str | Path,
    device: str | None = None,
    stop_after_step: int | None = None,
    final_eval: bool = True,
) -> dict[str, Any]:
    """Train the run described by ``cfg`` into ``out_dir``; return the final metrics.

    ``final_eval=False`` skips the test-set evaluation at the end, for callers (the workflow)
    that run ``scnf evaluate`` as a step of its own; the test set is then never loaded.

    Raises:
        CPUTooSlowError: ``device: auto`` found no GPU and the run would take more than a day
            on the CPU (``scnf.device.check_cpu_fallback``); nothing is written.
    """
    from scnf.provenance import collect, write_json

    t = cfg.train
    out_dir = Path(out_dir)
    requested = device or t.device
    dev = resolve_device(requested)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(dev)
    steps_per_epoch = math.ceil(planned_num_train(cfg) / t.batch_size)
    total_steps = t.epochs * steps_per_epoch
    if t.max_steps is not None:
        total_steps = min(total_steps, t.max_steps)
    num_params = sum(p.numel() for p in model.parameters())
    check_cpu_fallback(requested, dev, num_params, t.batch_size, total_steps)

    # The data are read and verified before the run directory is touched: a bad data dir
    # fails here and leaves an existing run (checkpoint, config, log) as it was.
    data = load_data(cfg, dev, test=final_eval)
    _prepare_out_dir(cfg, out_dir)
    autocast_dtype = configure_precision(t, dev)
    use_compile = t.compile  # CPU (inductor, C++) or CUDA; the same numbers as eager
    sampler = BatchSampler(data, t.batch_size, t.labelled_fraction, seed=cfg.seed + 1)
    assert sampler.steps_per_epoch == steps_per_epoch
    em = t.mode == "em-sgd"
    estep_every = t.estep_every or steps_per_epoch
    closed_form = em and uses_closed_form_m_step(model, t.gmm_m_step)
    if closed_form:
        hold_out_closed_form_parameters(model)  # the class Gaussians: set by the M-step
    optimizer = make_optimizer(model, t)
    scheduler = make_scheduler(optimizer, t, total_steps)

    state = load_checkpoint(out_dir / CHECKPOINT, dev)
    step, log, acc, elapsed, epoch_elapsed, cpu_used = 0, [], _zero_acc(dev), 0.0, 0.0, 0.0
    resp: torch.Tensor | None = None  # EM-SGD: r[j, k] of every unlabelled object
    estep_forward = None  # EM-SGD with train.compile: the compiled E-step pass, built once
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.generator.set_state(state["sampler_rng"].cpu())
        step, log, acc, elapsed = state["step"], state["log"], state["acc"], state["elapsed"]
        epoch_elapsed = state.get("epoch_elapsed", 0.0)
        cpu_used = state.get("cpu_s", 0.0)
        resp = state.get("responsibilities")
        if em and resp is None and step % estep_every != 0:
            raise ValueError(
                f"{out_dir / CHECKPOINT} holds no EM-SGD responsibilities (written by an older "
                "version?); remove it or train into a new directory"
            )
        print(f"resuming {out_dir} from step {step}/{total_steps}", file=sys.stderr)
    _write_log(out_dir, log)  # epochs logged after the checkpoint (or without one) rerun

    def objective(x: torch.Tensor, y: torch.Tensor, r: torch.Tensor | None):
        with torch.autocast(dev.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            return semi_supervised_objective(model, x, y, t.mode, t.clf_weight, r)

    step_fn = objective

    model.train()
    bar = tqdm(
        total=total_steps,
        initial=step,
        disable=not t.progress,
        mininterval=1.0,
        file=sys.stderr,
        dynamic_ncols=True,
        desc=cfg.name or cfg.preset,
    )
    epoch_start = time.perf_counter() - epoch_elapsed
    start = time.perf_counter() - elapsed
    cpu_start = time.process_time() - cpu_used  # CPU seconds of this process, all threads

    def clocks() -> dict[str, float]:
        """Cumulative wall and CPU seconds of training (across resumes), for the log."""
        return {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu_start}

    while step < total_steps:
        if use_compile and step >= 1 and step_fn is objective:
            # After the eager step that initialised ActNorm (a data-dependent branch).
            step_fn = torch.compile(objective, mode=t.compile_mode)
        x, y, iu = sampler.sample_with_indices()
        r_batch = None
        if em:
            if step % estep_every == 0:
                if step == 0:
                    # ActNorm's data-dependent init on this first batch, exactly as SGD's first
                    # forward does it, so that the first E-step sees an initialised f_w.
                    with torch.no_grad():
                        model.log_joint_all(x)
                if use_compile and estep_forward is None:
                    estep_forward = compiled_posterior(model, cfg.eval.batch_size)
                resp = e_step(
                    model, data, cfg.eval.batch_size, m_step=closed_form, forward=estep_forward
                )
                _check_finite_resp(resp, step, out_dir)
            r_batch = resp[iu]
        if step_fn is not objective and t.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        terms = step_fn(x, y, r_batch)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        if t.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        acc["nll"] += terms.nll
        acc["clf"] += terms.clf
        acc["correct"] += terms.correct
        acc["labelled"] += terms.n_lab
        acc["steps"] += 1
        bar.update(1)
        end_of_epoch = step % steps_per_epoch == 0 or step == total_steps
        if end_of_epoch or step % t.checkpoint_every == 0:
            _check_finite(acc, model, step, out_dir)
        if end_of_epoch:
            epoch = math.ceil(step / steps_per_epoch)
            entry = _epoch_entry(
                epoch, step, acc, optimizer, time.perf_counter() - epoch_start, t.batch_size
            )
            entry.update(clocks())
            at_step = t.monitor_every_steps and step % t.monitor_every_steps == 0
            if (t.monitor_every and epoch % t.monitor_every == 0) or at_step or step == total_steps:
                entry.update(monitor_model(model, data, cfg.eval.batch_size))
            log.append(entry)
            _append_log(out_dir, entry)
            bar.set_postfix(
                nll=f"{entry['train_nll']:.3f}",
                acc=f"{entry['train_acc']:.2f}",
                ips=f"{entry['images_per_s']:.0f}",
            )
            acc, epoch_start = _zero_acc(dev), time.perf_counter()
        elif t.monitor_every_steps and step % t.monitor_every_steps == 0:
            entry = {"epoch": step / steps_per_epoch, "step": step, **clocks()}
            entry.update(monitor_model(model, data, cfg.eval.batch_size))
            log.append(entry)
            _append_log(out_dir, entry)
        if step % t.checkpoint_every == 0 or step == total_steps:
            atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "sampler_rng": sampler.generator.get_state(),
                    "step": step,
                    "log": log,
                    "acc": acc,
                    "elapsed": time.perf_counter() - start,
                    "epoch_elapsed": time.perf_counter() - epoch_start,
                    "cpu_s": time.process_time() - cpu_start,
                    "responsibilities": resp,
                },
                out_dir / CHECKPOINT,
            )
        if stop_after_step is not None and step >= stop_after_step:
            raise _Interrupt(f"stopped after step {step} (test hook)")
    bar.close()

    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    atomic_save(model.state_dict(), out_dir / FINAL_MODEL)
    metrics = evaluate_model(model, data, cfg.eval.batch_size) if final_eval else {}
    final_monitor = {k: v for k, v in (log[-1] if log else {}).items() if k.startswith("mon_")}
    result = {
        "run": run_summary(cfg),
        "steps": step,
        "epochs": step / steps_per_epoch,
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "final_train_nll": log[-1]["train_nll"] if log else None,
        **final_monitor,
        "monitor_set": {
            "labelled": f"the {data.x_lab.shape[0]} labelled training objects",
            "heldout": data.heldout_name,
        },
        **metrics,
        "provenance": collect(cfg.to_dict(), wall),
    }
    write_json(out_dir / TRAIN_METRICS, result)
    return result


def _zero_acc(dev: torch.device) -> dict[str, Any]:
    z = torch.zeros((), device=dev)
    return {
        "nll": z.clone(),
        "clf": z.clone(),
        "correct": z.clone().long(),
        "labelled": 0,
        "steps": 0,
    }


def _check_finite(acc: dict[str, Any], model: torch.nn.Module, step: int, out_dir: Path) -> None:
    """Stop before a checkpoint could store a diverged model.

    Checks the accumulated loss and the weights themselves: a NaN gradient under a still
    finite loss (e.g. an overflow in the backward pass) poisons the weights one step before
    any loss shows it. One host sync per epoch / checkpoint, not per step.
    """
    loss_ok = torch.isfinite(acc["nll"])
    weights_ok = torch.stack([p.isfinite().all() for p in model.parameters()]).all()
    if not bool(loss_ok & weights_ok):
        what = "weights" if loss_ok else "training loss"
        raise NonFiniteLossError(
            f"non-finite {what} by step {step}; stopping without saving. The last good "
            f"checkpoint is {out_dir / CHECKPOINT} (if any). Lower train.lr, add "
            "train.warmup_steps or set train.grad_clip."
        )


def _check_finite_resp(resp: torch.Tensor, step: int, out_dir: Path) -> None:
    """An E-step on a diverged model yields NaN responsibilities: stop before storing them."""
    if not bool(torch.isfinite(resp).all()):
        raise NonFiniteLossError(
            f"non-finite EM-SGD responsibilities at the E-step of step {step}; stopping "
            f"without saving. The last good checkpoint is {out_dir / CHECKPOINT} (if any)."
        )


def _epoch_entry(
    epoch: int, step: int, acc: dict[str, Any], optimizer, seconds: float, batch_size: int
) -> dict[str, Any]:
    n = max(acc["steps"], 1)
    return {
        "epoch": epoch,
        "step": step,
        "lr": optimizer.param_groups[0]["lr"],
        "train_nll": acc["nll"].item() / n,
        "train_clf": acc["clf"].item() / n,
        "train_acc": acc["correct"].item() / max(acc["labelled"], 1),
        "images_per_s": acc["steps"] * batch_size / max(seconds, 1e-9),
        "seconds": seconds,
    }


def _append_log(out_dir: Path, entry: dict[str, Any]) -> None:
    with open(out_dir / TRAIN_LOG, "a") as fh:
        fh.write(json.dumps(entry) + "\n")


def _write_log(out_dir: Path, log: list[dict[str, Any]]) -> None:
    """Rewrite the log as of the checkpoint (empty without one): later epochs will rerun."""
    (out_dir / TRAIN_LOG).write_text("".join(json.dumps(e) + "\n" for e in log))
