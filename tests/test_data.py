"""Tests for scnf.data: toy generators, MNIST verification/loading, label splits, preprocessing."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from scnf.data import (
    MNIST_FILES,
    NUM_TEST,
    NUM_TRAIN,
    TOY_DATASETS,
    MNISTDataError,
    SplitFileError,
    bits_per_dim,
    default_data_dir,
    dequantize,
    load_mnist,
    load_split,
    make_label_split,
    make_toy,
    save_split,
    verify_mnist,
)
from scnf.data import mnist as mnist_module

# Class counts from /work/shared/data/MNIST/README.md.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
LABELS = "t10k-labels-idx1-ubyte"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Never touch ~/.cache in tests; session-scoped so session fixtures see it too."""
    path = tmp_path_factory.mktemp("scnf-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCNF_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def mnist_train(real_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return load_mnist(real_dir, train=True)


def _real_bytes(real_dir: Path, name: str) -> bytes:
    """Uncompressed bytes of one real file."""
    raw = real_dir / "MNIST" / "raw"
    plain = raw / name
    if plain.is_file():
        return plain.read_bytes()
    return gzip.decompress((raw / f"{name}.gz").read_bytes())


def _copy(tmp: Path, real_dir: Path, files: dict[str, bytes | None] | None = None) -> Path:
    """A data dir whose raw/ links to the real files, except ``files``: filename -> bytes,
    or None to leave the file out (keys are full file names, e.g. ``x.gz``)."""
    files = files or {}
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    real_raw = real_dir / "MNIST" / "raw"
    replaced = {k.removesuffix(".gz") for k in files}
    for name in MNIST_FILES:
        if name not in replaced:
            src = next(p for p in (real_raw / name, real_raw / f"{name}.gz") if p.is_file())
            (raw / src.name).symlink_to(src)
    for filename, data in files.items():
        if data is not None:
            (raw / filename).write_bytes(data)
    return tmp


# ---------------------------------------------------------------- toy data


@pytest.mark.parametrize("name", TOY_DATASETS)
@pytest.mark.parametrize(("split", "size"), [("train", NUM_TRAIN), ("test", NUM_TEST)])
def test_toy_shapes_and_balance(name: str, split: str, size: int) -> None:
    x, y = make_toy(name, split)
    assert x.shape == (size, 2) and x.dtype == torch.float32
    assert y.shape == (size,) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [size // 2, size // 2]
    assert torch.isfinite(x).all()
    assert (y[: size // 2] == 0).float().mean() < 0.6  # shuffled, not sorted by class


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toy_deterministic_and_seeded(name: str) -> None:
    x1, y1 = make_toy(name, seed=7)
    x2, y2 = make_toy(name, seed=7)
    x3, _ = make_toy(name, seed=8)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.allclose(x1, x3)
    assert torch.equal(make_toy(name)[0], make_toy(name)[0])
    # the default train and test sets use different seeds
    assert not torch.allclose(make_toy(name, "train", n=100)[0], make_toy(name, "test", n=100)[0])


def test_toy_geometry() -> None:
    x, y = make_toy("circles", n=10_000, noise=0.0)
    radius = x.norm(dim=1)
    assert torch.allclose(radius[y == 0], torch.tensor(1.0), atol=1e-5)
    assert torch.allclose(radius[y == 1], torch.tensor(0.2), atol=1e-5)
    x, y = make_toy("moons", n=10_000, noise=0.0)
    upper, lower = x[y == 0].double(), x[y == 1].double()
    assert torch.allclose(upper.norm(dim=1), torch.tensor(1.0, dtype=torch.float64), atol=1e-5)
    assert (upper[:, 1] >= 0).all()
    centred = lower - torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert torch.allclose(centred.norm(dim=1), torch.tensor(1.0, dtype=torch.float64), atol=1e-5)
    assert (lower[:, 1] <= 0.5 + 1e-6).all()
    # noise std 0.1 shows up as the spread of the outer circle's radius
    x, y = make_toy("circles", n=20_000)
    assert abs(float(x[y == 0].norm(dim=1).std()) - 0.1) < 0.01


def test_toy_errors() -> None:
    with pytest.raises(ValueError, match="spirals"):
        make_toy("spirals")
    with pytest.raises(ValueError, match="even"):
        make_toy("moons", n=11)
    with pytest.raises(ValueError, match="split"):
        make_toy("moons", split="valid")


# ---------------------------------------------------------------- splits


def test_split_balanced_and_reproducible() -> None:
    _, y = make_toy("moons")
    idx = make_label_split(y, per_class=5, seed=0)
    assert idx.dtype == np.int64 and idx.shape == (10,)
    assert np.all(np.diff(idx) > 0)  # sorted and disjoint
    assert np.bincount(y.numpy()[idx]).tolist() == [5, 5]
    assert np.array_equal(idx, make_label_split(y.numpy(), per_class=5, seed=0))
    assert not np.array_equal(idx, make_label_split(y, per_class=5, seed=1))


def test_split_mnist(mnist_train: tuple[torch.Tensor, torch.Tensor]) -> None:
    labels = mnist_train[1]
    splits = [make_label_split(labels, per_class=10, seed=s) for s in range(3)]
    for idx in splits:
        assert idx.size == 100 and np.unique(idx).size == 100
        assert np.bincount(labels.numpy()[idx], minlength=10).tolist() == [10] * 10
    assert not np.array_equal(splits[0], splits[1])


def test_split_too_few() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match="class 1 has 2 members"):
        make_label_split(labels, per_class=3, seed=0)


def test_split_json_round_trip(tmp_path: Path) -> None:
    _, y = make_toy("circles")
    idx = make_label_split(y, per_class=5, seed=3)
    path = tmp_path / "sub" / "split.json"
    save_split(path, idx, y, seed=3, dataset="circles")
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]  # no temp files left
    record = load_split(path, labels=y)
    assert np.array_equal(record["labelled"], idx) and record["labelled"].dtype == np.int64
    assert record["dataset"] == "circles" and record["seed"] == 3
    assert record["per_class"] == 5 and record["num_train"] == NUM_TRAIN
    assert record["class_counts"] == {"0": 5, "1": 5}


def _edit(record: dict, key: str, value: object) -> dict:
    return {**record, key: value}


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda text, rec: text[: len(text) // 2], "cannot read"),
        (lambda text, rec: json.dumps(_edit(rec, "labelled", [*rec["labelled"][:-1], 999])), "sha"),
        (lambda text, rec: json.dumps({k: v for k, v in rec.items() if k != "seed"}), "missing"),
        (lambda text, rec: json.dumps(_edit(rec, "num_train", 5)), r"\[0, 5\)"),
        (lambda text, rec: json.dumps(_edit(rec, "per_class", 4)), "per_class"),
        (lambda text, rec: json.dumps([1, 2]), "not a JSON object"),
    ],
)
def test_load_split_rejects_corrupt(tmp_path: Path, mutate, problem: str) -> None:
    _, y = make_toy("moons")
    path = tmp_path / "split.json"
    save_split(path, make_label_split(y, 5, seed=0), y, seed=0, dataset="moons")
    text = path.read_text()
    path.write_text(mutate(text, json.loads(text)))
    with pytest.raises(SplitFileError, match=problem) as err:
        load_split(path)
    assert str(path) in str(err.value)


def test_load_split_checks_labels(tmp_path: Path) -> None:
    _, y = make_toy("moons")
    path = tmp_path / "split.json"
    idx = make_label_split(y, 5, seed=0)
    save_split(path, idx, y, seed=0, dataset="moons")
    with pytest.raises(SplitFileError, match="num_train"):
        load_split(path, labels=y[:500])
    other = y.clone()
    other[idx[0]] = 1 - other[idx[0]]  # same size, class counts 4/6 instead of 5/5
    with pytest.raises(SplitFileError, match="class_counts"):
        load_split(path, labels=other)
    with pytest.raises(SplitFileError, match="cannot read"):
        load_split(tmp_path / "absent.json")


# ---------------------------------------------------------------- MNIST


def test_verify_real(real_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = verify_mnist(real_dir)
    assert set(paths) == set(MNIST_FILES) and all(p.is_file() for p in paths.values())

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("verification was not cached")

    monkeypatch.setattr(mnist_module.hashlib, "sha256", boom)
    assert verify_mnist(real_dir) == paths  # second call: no hashing at all


def test_load_real(real_dir: Path, mnist_train, cache_dir: Path) -> None:
    images, labels = mnist_train
    assert images.shape == (60_000, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and torch.bincount(labels).tolist() == TRAIN_COUNTS
    images, labels = load_mnist(real_dir, train=False)
    assert images.shape == (10_000, 28, 28) and torch.bincount(labels).tolist() == TEST_COUNTS
    if any(p.suffix == ".gz" for p in verify_mnist(real_dir).values()):
        sha = MNIST_FILES["t10k-images-idx3-ubyte"][1]
        assert (cache_dir / "mnist" / sha[:16] / "t10k-images-idx3-ubyte").is_file()


def test_missing_file(tmp_path: Path, real_dir: Path) -> None:
    data = _copy(tmp_path, real_dir, {f"{LABELS}.gz": None})
    with pytest.raises(MNISTDataError, match=f"{LABELS}: missing") as err:
        verify_mnist(data)
    assert err.value.missing == (LABELS,)
    assert "found in" in str(err.value) and "train-images-idx3-ubyte" in str(err.value)
    with pytest.raises(MNISTDataError, match="data.dir") as err:
        load_mnist(data, train=False)
    assert str(data.resolve()) in str(err.value)


def test_truncated_gzip(tmp_path: Path, real_dir: Path) -> None:
    blob = gzip.compress(_real_bytes(real_dir, LABELS))
    data = _copy(tmp_path, real_dir, {f"{LABELS}.gz": blob[: len(blob) // 2]})
    with pytest.raises(MNISTDataError, match=f"{LABELS}.gz: corrupt gzip"):
        verify_mnist(data)


def test_truncated_content(tmp_path: Path, real_dir: Path) -> None:
    blob = gzip.compress(_real_bytes(real_dir, LABELS)[:5000])
    data = _copy(tmp_path, real_dir, {f"{LABELS}.gz": blob})
    with pytest.raises(MNISTDataError, match="truncated: 5000 uncompressed bytes, expected 10008"):
        verify_mnist(data)


@pytest.mark.parametrize("compressed", [False, True])
def test_one_byte_changed(tmp_path: Path, real_dir: Path, compressed: bool) -> None:
    content = bytearray(_real_bytes(real_dir, LABELS))
    content[5000] = (content[5000] + 1) % 10
    name = f"{LABELS}.gz" if compressed else LABELS
    blob = gzip.compress(bytes(content)) if compressed else bytes(content)
    data = _copy(tmp_path, real_dir, {name: blob})
    with pytest.raises(MNISTDataError, match=f"{name}: checksum mismatch") as err:
        verify_mnist(data)
    assert MNIST_FILES[LABELS][1] in str(err.value) and err.value.damaged == (LABELS,)
    with pytest.raises(MNISTDataError, match="checksum"):
        load_mnist(data, train=False, download=True)  # damaged files are not re-downloaded


def test_uncompressed_accepted(tmp_path: Path, real_dir: Path, monkeypatch) -> None:
    plain = {n: _real_bytes(real_dir, n) for n in ("t10k-images-idx3-ubyte", LABELS)}
    data = _copy(tmp_path / "data", real_dir, {**plain, **{f"{n}.gz": None for n in plain}})
    paths = verify_mnist(data)
    assert paths[LABELS] == data / "MNIST" / "raw" / LABELS
    fresh_cache = tmp_path / "cache"
    monkeypatch.setenv("SCNF_CACHE_DIR", str(fresh_cache))
    images, labels = load_mnist(data, train=False)
    assert images.shape == (10_000, 28, 28) and torch.bincount(labels).tolist() == TEST_COUNTS
    assert not fresh_cache.exists()  # plain files are read in place


def test_cache_repairs_bad_copy(tmp_path: Path, real_dir: Path, monkeypatch) -> None:
    if verify_mnist(real_dir)[LABELS].suffix != ".gz":
        pytest.skip("needs the gzip copy")
    monkeypatch.setenv("SCNF_CACHE_DIR", str(tmp_path))
    target = tmp_path / "mnist" / MNIST_FILES[LABELS][1][:16] / LABELS
    target.parent.mkdir(parents=True)
    target.write_bytes(b"garbage")
    _, labels = load_mnist(real_dir, train=False)
    assert torch.bincount(labels).tolist() == TEST_COUNTS
    assert target.stat().st_size == MNIST_FILES[LABELS][0]
    assert sorted(p.name for p in target.parent.iterdir()) == [LABELS]  # no temp files


def test_download_when_missing(tmp_path: Path, real_dir: Path, monkeypatch) -> None:
    calls: list[str] = []

    class FakeMNIST:
        def __init__(self, root: str, download: bool) -> None:
            calls.append(root)
            _copy(Path(root), real_dir)

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    _, labels = load_mnist(tmp_path, train=False, download=True)
    assert calls == [str(tmp_path)] and torch.bincount(labels).tolist() == TEST_COUNTS


def test_default_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCNF_DATA_DIR", "/some/where")
    assert default_data_dir() == Path("/some/where")
    monkeypatch.delenv("SCNF_DATA_DIR")
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert default_data_dir() == Path("data")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert default_data_dir().resolve() == (tmp_path / "shared" / "data").resolve()


# ---------------------------------------------------------------- preprocessing


def test_dequantize() -> None:
    k = torch.randint(0, 256, (500, 28, 28), dtype=torch.uint8)
    k[0] = 255
    x = dequantize(k, generator=torch.Generator().manual_seed(0))
    assert x.shape == (500, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() < 1
    assert torch.equal(torch.floor(x * 256).to(torch.uint8)[:, 0], k)  # noise stays inside the bin
    u = x[:, 0] * 256 - k.float()
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.005
    again = dequantize(k, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    assert dequantize(k[:, None]).shape == (500, 1, 28, 28)
    with pytest.raises(TypeError):
        dequantize(k.float())


def test_bits_per_dim() -> None:
    assert bits_per_dim(0.0, 784) == pytest.approx(8.0)  # uniform density on [0,1]^D
    assert bits_per_dim(-784 * math.log(2), 784) == pytest.approx(9.0)
    # the authors' 1.145 bpd corresponds to log p(x) = (8 - 1.145) * 784 * ln 2 nats
    log_px = torch.tensor([(8 - 1.145) * 784 * math.log(2)] * 3)
    bpd = bits_per_dim(log_px, 784)
    assert isinstance(bpd, torch.Tensor) and bpd.shape == (3,)
    assert torch.allclose(bpd, torch.tensor(1.145, dtype=bpd.dtype))
    with pytest.raises(ValueError):
        bits_per_dim(0.0, 0)
