"""The bf16 fast path keeps the likelihood accurate: only conditioner networks run in bf16;
1x1 convolutions, affine maps, log-dets and reductions stay float32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scnf.data import bits_per_dim, make_label_split, save_split
from scnf.data.mnist import MNISTDataError, load_mnist
from scnf.layers import InvertibleLinear
from scnf.train import run_config_from_dict
from scnf.train.batches import load_data
from scnf.train.loop import train
from tests.conftest import TINY_MNIST

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_invertible_conv_is_never_autocast() -> None:
    layer = InvertibleLinear(4)
    x = torch.randn(3, 4, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, ld = layer(x)
        x_rec, _ = layer.inverse(z)
    assert z.dtype == torch.float32
    torch.testing.assert_close(z, layer(x)[0])
    torch.testing.assert_close(x_rec, x, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def trained_mnist(tmp_path_factory) -> tuple[Path, object]:
    try:
        _, labels = load_mnist(DATA, train=True)
    except MNISTDataError as err:
        pytest.skip(f"MNIST not available: {err}")
    root = tmp_path_factory.mktemp("mnist")
    save_split(root / "split.json", make_label_split(labels, 10, 0), labels, 0, "mnist")
    cfg = run_config_from_dict(
        {
            "dataset": "mnist",
            "preset": "mnist-glow",
            "split": str(root / "split.json"),
            "model": dict(TINY_MNIST),
            "data": {"dir": str(DATA), "num_train": 2000, "num_test": 256},
            "train": {
                "batch_size": 64,
                "max_steps": 25,
                "optimizer": "adam",
                "warmup_steps": 5,
                "checkpoint_every": 100,
                "monitor_every": 0,
                "progress": False,
                "device": "cpu",
            },
        }
    )
    train(cfg, root / "run")
    return root / "run", cfg


def test_bf16_bits_per_dim_agrees_with_float32(trained_mnist) -> None:
    from scnf.train.checkpoint import load_trained

    run_dir, cfg = trained_mnist
    model, _ = load_trained(run_dir)
    data = load_data(cfg, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    x = data.model_input(data.x_test[:256], gen)
    with torch.no_grad():
        ref = model.log_marginal(x).mean().item()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.log_marginal(x).mean().item()
    assert abs(bits_per_dim(ref, 784) - bits_per_dim(low, 784)) < 0.002
