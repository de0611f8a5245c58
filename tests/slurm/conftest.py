"""Fixtures for the SLURM integration tests: one local cluster per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster import running_cluster, skip_reason


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[dict[str, object]]:
    """A running single-node SLURM cluster (partitions ``cpu``, ``gpu``); torn down at the end.

    Skips, with the reason, where the cluster cannot run (not Linux, not root, no SLURM and
    no apt-get to install it).
    """
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with running_cluster() as info:
        yield info
