"""Evaluation: test error, train error on the labelled set, test NLL and bits/dim; monitors.

Test-time dequantisation noise comes from a generator with a fixed seed, so
the same model always gets the same figures (the authors redrew it at every
evaluation). NLL is in nats per object of the model's input space (the density
of dequantised pixels on [0, 1]^784 for MNIST, of raw 2-D points for the toy
sets); bits/dim converts the MNIST figure to 8-bit pixel space.

``evaluate_model`` is the only code that reads the test set, once per run at the end.
``monitor_model`` is what training watches instead: the labelled objects and a held-out
set the model may see (``scnf.train.batches``), with the same fixed dequantisation seed.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scnf.data import bits_per_dim
from scnf.device import resolve_device
from scnf.model import SCNF
from scnf.presets import PRESETS, preset_options
from scnf.train.batches import SemiSupervisedData, load_data
from scnf.train.checkpoint import load_trained
from scnf.train.config import ADDED_TRAIN_KEYS, NOT_PROTOCOL_KEYS

EVAL_SEED = 20190505  # dequantisation noise of the test set (fixed across runs and models)


@torch.no_grad()
def score(
    model: SCNF,
    data: SemiSupervisedData,
    raw: Tensor,
    labels: Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """(error in %, mean log p(x) in nats) of ``model`` on raw objects ``raw`` with ``labels``."""
    errors = torch.zeros((), device=raw.device)
    log_px = torch.zeros((), dtype=torch.float64, device=raw.device)
    for start in range(0, raw.shape[0], batch_size):
        x = data.model_input(raw[start : start + batch_size], generator)
        lj = model.log_joint_all(x)
        errors += (lj.argmax(1) != labels[start : start + batch_size]).sum()
        log_px += torch.logsumexp(lj, 1).double().sum()
    n = raw.shape[0]
    return 100.0 * errors.item() / n, log_px.item() / n


def evaluate_model(model: SCNF, data: SemiSupervisedData, batch_size: int = 512) -> dict[str, Any]:
    """All metrics of the paper's tables for ``model`` (switched to eval mode and back)."""
    if data.x_test is None:
        raise ValueError("evaluate_model needs the test set: load_data(..., test=True)")
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=data.x_test.device)
    gen.manual_seed(EVAL_SEED)
    test_error, test_ll = score(model, data, data.x_test, data.y_test, batch_size, gen)
    train_error, _ = score(model, data, data.x_lab, data.y_lab, batch_size, gen)
    model.train(was_training)
    dims = math.prod(data.x_test.shape[1:])
    return {
        "test_error": test_error,
        "train_error": train_error,
        "test_nll": -test_ll,
        "test_bpd": bits_per_dim(test_ll, dims) if data.image else None,
        "num_test": int(data.x_test.shape[0]),
        "num_labelled": int(data.x_lab.shape[0]),
    }


# Train keys that do not change what is learned (display, bookkeeping, where and how fast it
# runs); every other train key is part of a run's protocol.
def run_protocol(cfg: Any) -> dict[str, Any]:
    """Everything except the seed that changes a run's result, as flat dotted keys.

    ``model.*``: every preset option after overrides (so a changed preset default is a changed
    protocol); ``data.*``: the data subset sizes; ``train.*``: every training setting except
    ``scnf.train.config.NOT_PROTOCOL_KEYS``, and a key of ``ADDED_TRAIN_KEYS`` at the value
    runs recorded before it existed were trained with. The tables group runs on this and
    refuse to average runs that differ.
    """
    model = {**preset_options(cfg.preset), **cfg.model}
    out: dict[str, Any] = {f"model.{k}": _plain(v) for k, v in sorted(model.items())}
    out.update({"data.num_train": cfg.data.num_train, "data.num_test": cfg.data.num_test})
    train = cfg.train.__dict__ if hasattr(cfg.train, "__dict__") else dict(cfg.train)
    out.update(
        {
            f"train.{k}": _plain(v)
            for k, v in sorted(train.items())
            if k not in NOT_PROTOCOL_KEYS
            and not (k in ADDED_TRAIN_KEYS and v == ADDED_TRAIN_KEYS[k])
        }
    )
    return out


def _plain(v: Any) -> Any:
    """JSON-stable value: tuples become lists."""
    return list(v) if isinstance(v, tuple) else v


def monitor_model(
    model: SCNF, data: SemiSupervisedData, batch_size: int = 512
) -> dict[str, float | None]:
    """Training monitors (switched to eval mode and back); the test set is not touched.

    Returns ``mon_labelled_error`` (% on the labelled training objects), ``mon_heldout_error``
    (%), ``mon_heldout_nll`` (nats) and ``mon_heldout_bpd`` (MNIST, else None) on the
    held-out set; the held-out keys are None when the data carry none.
    """
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=data.x_lab.device)
    gen.manual_seed(EVAL_SEED)
    lab_error, _ = score(model, data, data.x_lab, data.y_lab, batch_size, gen)
    out: dict[str, float | None] = {
        "mon_labelled_error": lab_error,
        "mon_heldout_error": None,
        "mon_heldout_nll": None,
        "mon_heldout_bpd": None,
    }
    if data.x_heldout is not None:
        err, ll = score(model, data, data.x_heldout, data.y_heldout, batch_size, gen)
        dims = math.prod(data.x_heldout.shape[1:])
        out["mon_heldout_error"] = err
        out["mon_heldout_nll"] = -ll
        out["mon_heldout_bpd"] = bits_per_dim(ll, dims) if data.image else None
    model.train(was_training)
    return out


def run_summary(cfg: Any) -> dict[str, Any]:
    """The keys that place a run in the paper's tables, and its protocol (``run_protocol``)."""
    _, f, h = PRESETS[cfg.preset]
    zf = {**preset_options(cfg.preset), **cfg.model}.get("zf_dim", 2)  # toy: z_f is all of z
    return {
        "dataset": cfg.dataset,
        "preset": cfg.preset,
        "f": f,
        "h": h,
        "mode": cfg.train.mode,
        "clf_weight": cfg.train.clf_weight,
        "zf_dim": zf,
        "seed": cfg.seed,
        "protocol": run_protocol(cfg),
    }


def evaluate_run(run_dir: str | Path, device: str = "auto") -> dict[str, Any]:
    """Load the finished run in ``run_dir`` and compute its metrics (with provenance)."""
    from scnf.provenance import collect

    dev = resolve_device(device)
    model, cfg = load_trained(run_dir, dev)
    start = time.perf_counter()
    data = load_data(cfg, dev)
    metrics = evaluate_model(model, data, cfg.eval.batch_size)
    wall = time.perf_counter() - start
    return {"run": run_summary(cfg), **metrics, "provenance": collect(cfg.to_dict(), wall)}
