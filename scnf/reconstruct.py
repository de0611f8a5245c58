"""Figure artefacts from a finished run: Fig. 2 reconstructions and the toy plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scnf.device import resolve_device
from scnf.evaluate import EVAL_SEED
from scnf.train.batches import load_data
from scnf.train.checkpoint import load_trained


@torch.no_grad()
def reconstruct_from_zf(model, x: torch.Tensor) -> torch.Tensor:
    """x -> f_w^{-1}([0, z_f]): keep only the deepest components, zero z_aux (paper, Fig. 2)."""
    z_f, z_aux = model.encode(x)
    return model.decode(z_f, torch.zeros_like(z_aux)).clamp(0.0, 1.0)


def reconstruct_run(
    run_dir: str | Path, out: str | Path, num_images: int = 10, device: str = "auto"
) -> None:
    """Write an .npz with ``originals``, ``reconstructions`` (N, 28, 28) and ``zf_dim``."""
    dev = resolve_device(device)
    model, cfg = load_trained(run_dir, dev)
    if cfg.dataset != "mnist":
        raise ValueError(f"reconstruct needs an MNIST run, {run_dir} is {cfg.dataset!r}")
    data = load_data(cfg, dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(EVAL_SEED)
    # One image per class first (0..9), so the grid shows every digit.
    picks = [int(torch.nonzero(data.y_test == k)[0]) for k in range(model.num_classes)]
    idx = torch.tensor((picks * ((num_images // len(picks)) + 1))[:num_images], device=dev)
    x = data.model_input(data.x_test[idx], gen)
    rec = reconstruct_from_zf(model, x)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        originals=x[:, 0].cpu().numpy(),
        reconstructions=rec[:, 0].cpu().numpy(),
        zf_dim=np.int64(model.zf_dim),
        labels=data.y_test[idx].cpu().numpy(),
    )


def toy_plot_run(run_dir: str | Path, out: str | Path) -> None:
    """Appendix D plot (density and decision regions) of a finished toy run."""
    from scnf.report.figures import plot_toy

    model, cfg = load_trained(run_dir, "cpu")
    if cfg.dataset == "mnist":
        raise ValueError(f"toy-plot needs a toy run, {run_dir} is MNIST")
    data = load_data(cfg, torch.device("cpu"))
    x = torch.cat([data.x_lab, data.x_unl])
    y_unl = torch.full((data.x_unl.shape[0],), -1)
    y = torch.cat([data.y_lab, y_unl])
    labelled = torch.zeros(x.shape[0], dtype=torch.bool)
    labelled[: data.x_lab.shape[0]] = True
    title = f"{cfg.dataset}: {cfg.preset} (seed {cfg.seed})"
    plot_toy(model, x, y, labelled, Path(out), title)
