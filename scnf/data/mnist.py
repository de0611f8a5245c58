"""MNIST from a local (possibly read-only, possibly offline) copy, verified by SHA-256.

The four IDX files live in torchvision's layout, ``<data_dir>/MNIST/raw/``, either
uncompressed or gzip-compressed (``<name>.gz``). Every file is checked against the size
and SHA-256 of its *uncompressed* bytes (``MNIST_FILES``, from the offline copy's README),
so a gzip and a plain copy of the same data verify alike. Verification streams the data
(no second copy in memory) and is cached per process, keyed by path, mtime and size.

torchvision's IDX readers need uncompressed files; a ``.gz`` is decompressed once into a
content-addressed cache (``$SCNF_CACHE_DIR/mnist/<sha256[:16]>/<name>``, default
``~/.cache/scnf``), atomically, never into ``data_dir``, which may be read-only.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import zlib
from pathlib import Path

import torch

MNIST_FILES: dict[str, tuple[int, str]] = {
    "train-images-idx3-ubyte": (
        47_040_016,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train-labels-idx1-ubyte": (
        60_008,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "t10k-images-idx3-ubyte": (
        7_840_016,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "t10k-labels-idx1-ubyte": (
        10_008,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}
_SPLIT_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}
_CHUNK = 1 << 20
# What to change, in the words of where the user is: ``scnf`` on the command line (or from
# Python), or the Snakemake workflow, whose splits step (the first to read MNIST) runs
# ``SCNF_DATA_HINT=workflow python -m scnf splits ...`` (workflow/rules/splits.smk).
HINT_ENV = "SCNF_DATA_HINT"
_HINTS = {
    "cli": "Point the config key `data.dir` (`--data-dir` for `scnf splits`; $SCNF_DATA_DIR "
    "where the config does not set data.dir) at a directory holding MNIST/raw/, e.g. "
    "`../shared/data` for the offline copy, or set `data.download: true` (`--download`) where "
    "there is internet.",
    "workflow": "Set `data_dir` in the workflow config (or `--config data_dir=DIR`) to a "
    "directory holding MNIST/raw/, e.g. `../shared/data` for the offline copy, or run with "
    "`--config download=true` where there is internet.",
}


def data_hint() -> str:
    """How to point scnf at MNIST: the workflow's keys when ``$SCNF_DATA_HINT`` is
    ``workflow``, else the run config's and the command line's."""
    return _HINTS.get(os.environ.get(HINT_ENV, "cli"), _HINTS["cli"])


# (resolved path, mtime_ns, size) -> (uncompressed byte count, sha256 hex)
_HASH_CACHE: dict[tuple[str, int, int], tuple[int, str]] = {}


class MNISTDataError(RuntimeError):
    """MNIST files missing or damaged.

    Attributes:
        missing: names of the files that were not found at all.
        damaged: names of the files that were found but failed verification.
    """

    def __init__(self, message: str, missing: tuple[str, ...] = (), damaged: tuple[str, ...] = ()):
        super().__init__(message)
        self.missing = missing
        self.damaged = damaged


def default_data_dir() -> Path:
    """``$SCNF_DATA_DIR`` if set, else ``../shared/data`` (the offline copy) if it exists,
    else ``data`` (relative paths are relative to the working directory)."""
    env = os.environ.get("SCNF_DATA_DIR")
    if env:
        return Path(env)
    shared = Path.cwd().parent / "shared" / "data"
    return shared if shared.is_dir() else Path("data")


def _raw_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


def _cache_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def _measure(path: Path) -> tuple[int, str]:
    """Byte count and SHA-256 of the uncompressed content of ``path``; gzip is streamed."""
    key = _cache_key(path)
    if key in _HASH_CACHE:
        return _HASH_CACHE[key]
    digest, nbytes = hashlib.sha256(), 0
    with open(path, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            nbytes += len(chunk)
    _HASH_CACHE[key] = (nbytes, digest.hexdigest())
    return _HASH_CACHE[key]


def _problem(name: str, path: Path) -> str | None:
    """Why ``path`` is not a good copy of ``name``, or None if it is."""
    size, sha = MNIST_FILES[name]
    try:
        nbytes, got = _measure(path)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        return f"{path.name}: corrupt gzip ({err})"
    except OSError as err:
        return f"{path.name}: cannot read ({err})"
    if nbytes != size:
        kind = "truncated" if nbytes < size else "too large"
        return f"{path.name}: {kind}: {nbytes} uncompressed bytes, expected {size}"
    if got != sha:
        return f"{path.name}: checksum mismatch (sha256 expected {sha}, got {got})"
    return None


def _listing(raw: Path) -> str:
    if not raw.is_dir():
        return f"{raw} does not exist"
    entries = sorted(raw.iterdir())
    if not entries:
        return f"{raw} is empty"

    def describe(p: Path) -> str:
        if p.is_dir():
            return f"{p.name}/"
        return f"{p.name} ({p.stat().st_size} B)" if p.exists() else f"{p.name} (broken link)"

    return f"found in {raw}: " + ", ".join(describe(p) for p in entries)


def verify_mnist(data_dir: str | os.PathLike) -> dict[str, Path]:
    """Check the four MNIST IDX files under ``<data_dir>/MNIST/raw/``.

    For each name in ``MNIST_FILES`` the uncompressed file is used if present, else
    ``<name>.gz``. Sizes and SHA-256 refer to the uncompressed bytes.

    Returns:
        name -> path of the verified file (plain or ``.gz``).

    Raises:
        MNISTDataError: naming every missing, truncated, corrupt or mismatching file,
            followed by a listing of what the directory holds.
    """
    raw = _raw_dir(data_dir)
    found: dict[str, Path] = {}
    missing: list[str] = []
    damaged: list[str] = []
    problems: list[str] = []
    for name in MNIST_FILES:
        path = next((p for p in (raw / name, raw / f"{name}.gz") if p.is_file()), None)
        if path is None:
            missing.append(name)
            problems.append(f"{name}: missing (neither {name} nor {name}.gz)")
            continue
        found[name] = path
        if (problem := _problem(name, path)) is not None:
            damaged.append(name)
            problems.append(problem)
    if problems:
        raise MNISTDataError(
            f"MNIST in {raw} failed verification:\n  - "
            + "\n  - ".join(problems)
            + f"\n{_listing(raw)}",
            missing=tuple(missing),
            damaged=tuple(damaged),
        )
    return found


def _cache_root() -> Path:
    env = os.environ.get("SCNF_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "scnf"


def _uncompressed(name: str, path: Path) -> Path:
    """A verified uncompressed copy of ``path``: itself, or a file in the cache."""
    if path.suffix != ".gz":
        return path
    size, sha = MNIST_FILES[name]
    target = _cache_root() / "mnist" / sha[:16] / name
    if target.is_file() and _problem(name, target) is None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        digest, nbytes = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, gzip.open(path, "rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                nbytes += len(chunk)
                out.write(chunk)
        if (nbytes, digest.hexdigest()) != (size, sha):
            raise MNISTDataError(f"{path} changed while being decompressed; verify it again")
        os.replace(tmp, target)  # atomic: readers never see a partial file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _HASH_CACHE[_cache_key(target)] = (size, sha)
    return target


def _download(data_dir: Path) -> None:
    from torchvision.datasets import MNIST

    try:
        MNIST(root=str(data_dir), download=True)
    except Exception as err:  # network errors come in many types; report them all alike
        raise MNISTDataError(
            f"downloading MNIST into {data_dir} failed: {err}\n{data_hint()}"
        ) from err


def load_mnist(
    data_dir: str | os.PathLike, train: bool, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the verified MNIST train (60,000) or test (10,000) set.

    Args:
        data_dir: directory holding ``MNIST/raw/`` (see ``default_data_dir``).
        train: the training set if True, else the test set.
        download: if files are missing (and none is damaged), fetch them with
            torchvision, then verify. Damaged files are never replaced automatically.

    Returns:
        images uint8 of shape (N, 28, 28) and labels int64 of shape (N,).

    Raises:
        MNISTDataError: files missing (with a hint on ``data.dir``) or failing verification.
    """
    from torchvision.datasets.mnist import read_image_file, read_label_file

    data_dir = Path(data_dir)
    try:
        paths = verify_mnist(data_dir)
    except MNISTDataError as err:
        if not err.missing or err.damaged:
            raise  # damaged files need a person, not a silent re-download
        if not download:
            raise MNISTDataError(
                f"MNIST files missing in data dir {data_dir.resolve()}: {', '.join(err.missing)}."
                f"\n{data_hint()}\n{err}",
                missing=err.missing,
            ) from err
        _download(data_dir)
        paths = verify_mnist(data_dir)

    image_name, label_name, count = _SPLIT_FILES[train]
    images = read_image_file(str(_uncompressed(image_name, paths[image_name])))
    labels = read_label_file(str(_uncompressed(label_name, paths[label_name]))).to(torch.int64)
    if images.shape != (count, 28, 28) or labels.shape != (count,):
        shapes = f"{tuple(images.shape)}, {tuple(labels.shape)}"
        raise MNISTDataError(f"unexpected MNIST shapes {shapes} in {data_dir}")
    return images, labels
