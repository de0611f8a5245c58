"""Labelled/unlabelled splits: which training objects keep their label.

Protocol (paper Sec. 4, after Kingma et al., 2014): MNIST keeps 10 labels per class of
the 60,000 training images (``MNIST_PER_CLASS``), the toy sets 5 per class of their
1000 points (``TOY_PER_CLASS``); every other training object is unlabelled. Unlike the
authors' code (a stratified draw that gave 11 "1"s and 9 "5"s), the split here is
exactly balanced and drawn with ``numpy.random.Generator(seed)``, so it is reproducible
across library versions.

A split is stored as a small JSON file (see ``save_split``) so that a workflow can
create it once, record it with the results and reload it bit-identically.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scnf.provenance import write_json

MNIST_PER_CLASS: int = 10
TOY_PER_CLASS: int = 5
_KEYS = ("dataset", "seed", "per_class", "num_train", "labelled", "class_counts", "sha256")


class SplitFileError(ValueError):
    """A split file is missing, unreadable or inconsistent."""


def _as_labels(labels: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    return labels.astype(np.int64)


def index_sha256(indices: np.ndarray | list[int]) -> str:
    """SHA-256 of the indices written as decimal numbers joined by commas (ASCII)."""
    text = ",".join(str(int(i)) for i in indices)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def make_label_split(labels: torch.Tensor | np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Pick exactly ``per_class`` labelled objects of every class, without replacement.

    Args:
        labels: class of every training object, shape (N,).
        per_class: labelled objects to keep per class.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same split.

    Returns:
        sorted int64 indices into ``labels``, ``per_class`` times the number of classes.

    Raises:
        ValueError: if ``per_class < 1`` or some class has fewer than ``per_class`` members.
    """
    labels = _as_labels(labels)
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if members.size < per_class:
            raise ValueError(f"class {cls} has {members.size} members, fewer than {per_class}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _class_counts(labels: np.ndarray, indices: np.ndarray) -> dict[str, int]:
    picked = labels[indices]
    return {str(c): int(np.count_nonzero(picked == c)) for c in np.unique(labels)}


def save_split(
    path: str | os.PathLike,
    indices: np.ndarray,
    labels: torch.Tensor | np.ndarray,
    seed: int,
    dataset: str,
) -> None:
    """Write a split as JSON, atomically (temporary file + ``os.replace``).

    The file holds ``dataset``, ``seed``, ``per_class`` (None if the classes are not
    balanced), ``num_train`` (= len(labels)), ``labelled`` (sorted indices),
    ``class_counts`` (labelled objects per class, every class of ``labels`` listed) and
    ``sha256`` of the index list (``index_sha256``), which ``load_split`` re-checks.
    """
    labels = _as_labels(labels)
    idx = np.sort(np.asarray(indices, dtype=np.int64))
    if idx.size and (idx[0] < 0 or idx[-1] >= labels.size or np.any(np.diff(idx) == 0)):
        raise ValueError("indices must be distinct and within range(len(labels))")
    counts = _class_counts(labels, idx)
    values = set(counts.values())
    record = {
        "dataset": dataset,
        "seed": int(seed),
        "per_class": values.pop() if len(values) == 1 else None,
        "num_train": int(labels.size),
        "labelled": idx.tolist(),
        "class_counts": counts,
        "sha256": index_sha256(idx),
    }
    write_json(path, record, indent=1)


def _check(record: Any, labels: np.ndarray | None) -> str | None:
    """The first problem with a decoded split record, or None."""
    if not isinstance(record, dict):
        return "top level is not a JSON object"
    if absent := [k for k in _KEYS if k not in record]:
        return f"missing keys {absent}"
    idx, counts, num_train = record["labelled"], record["class_counts"], record["num_train"]
    if not isinstance(num_train, int) or num_train < 1:
        return f"num_train must be a positive integer, got {num_train!r}"
    if not isinstance(idx, list) or not all(isinstance(i, int) for i in idx):
        return "labelled must be a list of integers"
    if idx != sorted(set(idx)):
        return "labelled indices must be sorted and distinct"
    if idx and (idx[0] < 0 or idx[-1] >= num_train):
        return f"labelled indices must lie in [0, {num_train})"
    if index_sha256(idx) != record["sha256"]:
        return f"sha256 mismatch (stored {record['sha256']}, computed {index_sha256(idx)})"
    if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
        return "class_counts must map class names to integers"
    if sum(counts.values()) != len(idx):
        return f"class_counts do not add up to the {len(idx)} labelled indices"
    per_class = record["per_class"]
    if per_class is not None and set(counts.values()) != {per_class}:
        return f"per_class is {per_class} but class_counts are {counts}"
    if labels is not None:
        if labels.size != num_train:
            return f"num_train is {num_train} but the data set has {labels.size} objects"
        if _class_counts(labels, np.asarray(idx, dtype=np.int64)) != counts:
            return "class_counts do not match the labels of the data set"
    return None


def load_split(
    path: str | os.PathLike, labels: torch.Tensor | np.ndarray | None = None
) -> dict[str, Any]:
    """Read and validate a split written by ``save_split``.

    Args:
        path: the JSON file.
        labels: optionally the training labels, to check that the split belongs to them.

    Returns:
        the record, with ``labelled`` as a sorted int64 numpy array.

    Raises:
        SplitFileError: naming the path and the problem.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SplitFileError(f"split file {path}: cannot read: {err}") from err
    problem = _check(record, None if labels is None else _as_labels(labels))
    if problem is not None:
        raise SplitFileError(f"split file {path}: {problem}")
    record["labelled"] = np.asarray(record["labelled"], dtype=np.int64)
    return record
