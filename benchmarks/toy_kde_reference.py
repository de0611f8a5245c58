"""A reference for the toy NLLs: a Gaussian kernel density estimate on the 1000 training points.

Prints the validation NLL (nats, ``make_toy(name, "val")``, never the test set) of an isotropic
Gaussian KDE on the training set for a range of bandwidths. It is not a bound, but it shows how
far 1000 points are from the data's entropy for a simple, well-tuned estimator
(results/toy-recipe/README.md):

    python benchmarks/toy_kde_reference.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scnf.data import make_toy  # noqa: E402

BANDWIDTHS = (0.04, 0.05, 0.06, 0.07, 0.08, 0.1)


def kde_nll(train: torch.Tensor, val: torch.Tensor, bandwidth: float, chunk: int = 2000) -> float:
    """Mean -log of the KDE density at ``val`` (nats), in chunks to bound memory."""
    total = 0.0
    norm = math.log(train.shape[0]) + math.log(2 * math.pi * bandwidth**2)
    for v in val.split(chunk):
        d2 = torch.cdist(v, train) ** 2
        total += float((torch.logsumexp(-d2 / (2 * bandwidth**2), 1) - norm).sum())
    return -total / val.shape[0]


def main() -> None:
    for name in ("moons", "circles"):
        x, _ = make_toy(name, "train")
        v, _ = make_toy(name, "val")
        scores = {h: kde_nll(x.double(), v.double(), h) for h in BANDWIDTHS}
        best = min(scores, key=scores.get)
        row = "  ".join(f"h={h}: {s:.4f}" for h, s in scores.items())
        print(f"{name:8s} {row}  | best h={best}: {scores[best]:.4f} nats")


if __name__ == "__main__":
    main()
