"""Figures: Fig. 2 (reconstructions from z_f only), the toy density / decision-region plots and
the training curves of the monitored (non-test) metrics.

Matplotlib runs on the non-interactive Agg backend (set on the figure's canvas, not globally), so
the functions work on headless cluster nodes and do not change the caller's backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from pandas import DataFrame
from torch import Tensor

from scnf.model import SCNF

__all__ = ["grid_limits", "plot_curves", "plot_fig2", "plot_toy"]

_CLASS_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _save(fig: Figure, out_png: Path, dpi: int = 120) -> None:
    """Render ``fig`` with Agg and write it as PNG, creating parent directories."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out_png, dpi=dpi, format="png")


def _images(a: np.ndarray, name: str) -> np.ndarray:
    """(N, 28, 28) view of an image batch stored as (N, 28, 28), (N, 1, 28, 28) or (N, 784)."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 0 or a.size % 784:
        raise ValueError(f"{name} must hold 28x28 images, got shape {a.shape}")
    return a.reshape(-1, 28, 28)


def plot_fig2(recon_paths: list[Path], out_png: Path, max_images: int = 10) -> None:
    """Grid like the paper's Fig. 2: originals, then reconstructions f_w^{-1}([z_f, 0]).

    Args:
        recon_paths: ``.npz`` files with ``originals`` (N, 28, 28) in [0, 1],
            ``reconstructions`` (N, 28, 28) and scalar ``zf_dim``; one file per z_f size.
            The originals row is taken from the first file (sorted by ``zf_dim``); all files
            are expected to reconstruct the same test images.
        out_png: output path.
        max_images: at most this many columns.

    Raises:
        ValueError: on no input, two files with the same ``zf_dim``, or mismatched shapes.
    """
    entries = []
    for p in recon_paths:
        with np.load(p) as data:
            entries.append(
                (
                    int(data["zf_dim"]),
                    _images(data["originals"], f"{p}: originals"),
                    _images(data["reconstructions"], f"{p}: reconstructions"),
                )
            )
    if not entries:
        raise ValueError("plot_fig2 needs at least one reconstruction file")
    entries.sort(key=lambda e: e[0])
    dims = [e[0] for e in entries]
    if len(set(dims)) != len(dims):
        raise ValueError(f"duplicate zf_dim among reconstruction files: {dims}")
    originals = entries[0][1]
    n = min(max_images, len(originals), *(len(e[2]) for e in entries))
    rows = [("original", originals)] + [(f"z_f = {d}", rec) for d, _, rec in entries]

    fig = Figure(figsize=(1.0 * n + 1.2, 1.0 * len(rows) + 0.3))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(np.clip(images[c], 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.subplots_adjust(left=1.0 / (n + 1.2), right=0.99, top=0.97, bottom=0.03, wspace=0.05)
    _save(fig, out_png)


_MONITOR_LABELS = {
    "mon_heldout_error": "held-out error (%)",
    "mon_heldout_nll": "held-out NLL (nats)",
    "mon_heldout_bpd": "held-out bits/dim",
    "mon_labelled_error": "labelled training error (%)",
}


def plot_curves(curves: DataFrame, out_png: Path, title: str = "") -> None:
    """Monitored metrics against optimiser steps: a panel per (dataset, metric), a colour per
    variant, one thin line per seed.

    ``curves`` is ``scnf.report.runs.collect_curves``'s long table (columns ``dataset``,
    ``variant``, ``seed``, ``step`` and ``mon_*``). Only non-test monitors are logged during
    training, so the curves show convergence without looking at the test set. An empty table
    gives a figure saying that no curves were logged.
    """
    metrics = [m for m in _MONITOR_LABELS if m in curves.columns and curves[m].notna().any()]
    datasets = sorted(curves["dataset"].unique()) if not curves.empty else []
    if not metrics or not datasets:
        fig = Figure(figsize=(5, 1.5))
        fig.text(0.5, 0.5, "no monitored metrics logged", ha="center", va="center")
        _save(fig, out_png)
        return
    fig = Figure(figsize=(4.2 * len(metrics), 3.2 * len(datasets) + 0.6), layout="constrained")
    axes = fig.subplots(len(datasets), len(metrics), squeeze=False)
    variants = sorted(curves["variant"].unique())
    colours = {v: f"C{i % 10}" for i, v in enumerate(variants)}
    for r, dataset in enumerate(datasets):
        part = curves[curves["dataset"] == dataset]
        for c, metric in enumerate(metrics):
            ax = axes[r][c]
            for (variant, _seed), run in part.groupby(["variant", "seed"], sort=True):
                run = run.dropna(subset=[metric]).sort_values("step")
                ax.plot(run["step"], run[metric], lw=0.9, alpha=0.8, color=colours[variant])
            ax.set_title(f"{dataset}: {_MONITOR_LABELS[metric]}", fontsize=9)
            ax.set_xlabel("optimiser step", fontsize=8)
            ax.tick_params(labelsize=7)
    handles = [axes[0][0].plot([], [], color=colours[v], label=v)[0] for v in variants]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(variants), 6),
               fontsize=8)  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, out_png)


def grid_limits(x: Tensor, margin: float = 0.1) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) of the data, widened by ``margin`` of each range."""
    lo = x.min(dim=0).values.double()
    hi = x.max(dim=0).values.double()
    pad = (hi - lo).clamp_min(1e-3) * margin
    lo, hi = lo - pad, hi + pad
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


@torch.no_grad()
def _evaluate_grid(model: SCNF, points: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """log p(x) and argmax_y p(y|x) on ``points``, in chunks to bound memory."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    log_px, pred = [], []
    for part in points.split(chunk):
        part = part.to(device=device, dtype=dtype)
        joint = model.log_joint_all(part)  # one pass of f_w gives both quantities
        log_px.append(torch.logsumexp(joint, dim=1).cpu())
        pred.append(joint.argmax(dim=1).cpu())  # argmax of log p(y|x) = argmax of log p(x, y)
    return torch.cat(log_px), torch.cat(pred)


def plot_toy(
    model: SCNF,
    x: Tensor,
    y: Tensor,
    labelled: Tensor,
    out_png: Path,
    title: str,
    grid_size: int = 200,
    chunk: int = 4096,
) -> None:
    """Two panels for a 2-D toy problem: learned density p(x) and decision regions.

    Args:
        model: a trained toy SCNF (2-D input). Evaluated under ``eval()`` and ``no_grad``;
            its training mode is restored afterwards.
        x: (N, 2) training points. y: (N,) classes. labelled: (N,) bool, which labels were seen.
        out_png: output path. title: figure title.
        grid_size: points per axis; the grid spans the data with a 10% margin.
        chunk: grid points per model call.
    """
    x = x.detach().cpu().float()
    y = y.detach().cpu().long()
    labelled = labelled.detach().cpu().bool()
    x0, x1, y0, y1 = grid_limits(x)
    gx = torch.linspace(x0, x1, grid_size)
    gy = torch.linspace(y0, y1, grid_size)
    mesh_y, mesh_x = torch.meshgrid(gy, gx, indexing="ij")  # rows follow the vertical axis
    points = torch.stack([mesh_x.reshape(-1), mesh_y.reshape(-1)], dim=1)

    was_training = model.training
    model.eval()
    try:
        log_px, pred = _evaluate_grid(model, points, chunk)
    finally:
        model.train(was_training)
    density = log_px.exp().reshape(grid_size, grid_size).numpy()
    regions = pred.reshape(grid_size, grid_size).numpy()
    k = model.num_classes
    colours = [_CLASS_COLOURS[i % len(_CLASS_COLOURS)] for i in range(k)]

    fig = Figure(figsize=(10, 4.6))
    ax_d, ax_r = fig.subplots(1, 2)
    extent = (x0, x1, y0, y1)
    im = ax_d.imshow(density, origin="lower", extent=extent, aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=ax_d, label="p(x)")
    ax_d.set_title("learned density p(x)")
    ax_r.imshow(
        regions,
        origin="lower",
        extent=extent,
        aspect="auto",
        cmap=ListedColormap(colours),
        vmin=-0.5,
        vmax=k - 0.5,
        alpha=0.35,
        interpolation="nearest",
    )
    ax_r.set_title("decision regions argmax p(y|x)")
    xs = x.numpy()
    for ax in (ax_d, ax_r):
        ax.scatter(*xs[~labelled.numpy()].T, s=3, c="0.5", alpha=0.6, linewidths=0)
        for c in range(k):
            sel = (labelled & (y == c)).numpy()
            ax.scatter(*xs[sel].T, s=60, c=colours[c], edgecolors="black", label=f"labelled y={c}")
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
    ax_r.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, out_png)
