"""Provenance of a result: which code, on which machine, with which settings, when.

Every ``metrics.json`` and the final report carry the dictionary that ``collect`` returns, so a
number in a table can be traced back to a commit, a config and the hardware it was computed on.
``collect`` never raises: a field it cannot determine is ``None`` (e.g. ``commit`` outside a git
checkout), because losing a finished training run to a provenance error would be worse than a
missing field.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["collect", "git_state", "package_versions", "device_info", "write_json"]

_PACKAGES = ("scnf", "torch", "torchvision", "torchdiffeq", "numpy", "matplotlib", "pyyaml")
_GIT_TIMEOUT_S = 10.0
COMMIT_ENV = "SCNF_GIT_COMMIT"  # commit of a source copy that has no .git


def _git(args: list[str], cwd: Path) -> str | None:
    """Output of ``git <args>`` run in ``cwd``, or None on any failure (no git, not a repo, ...)."""
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(repo: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Commit hash and dirty flag of the git checkout holding ``repo``.

    Args:
        repo: a directory inside the checkout; defaults to the directory of the installed ``scnf``
            package, i.e. the code that actually ran (not the caller's working directory).

    Returns:
        ``{"commit": str | None, "dirty": bool | None}``. Outside a git checkout (e.g. a copy of
        the tree sent to a GPU machine) ``commit`` is the value of ``$SCNF_GIT_COMMIT`` as
        declared by whoever sent the copy, else None, and ``dirty`` is None.
        ``dirty`` is True when tracked code or config differs from the commit; it ignores
        untracked files (logs, caches), the top-level ``results/`` folder, whose files are
        the outputs being described, not the code that made them, and Markdown documentation
        (``*.md``), which no run reads.
    """
    cwd = Path(repo) if repo is not None else Path(__file__).resolve().parent
    declared = {"commit": os.environ.get(COMMIT_ENV) or None, "dirty": None}
    if not cwd.is_dir():
        return declared
    commit = _git(["rev-parse", "HEAD"], cwd)
    if not commit:
        return declared
    status = _git(
        [
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ":(top)",
            ":(top,exclude)results",
            ":(top,exclude,glob)**/*.md",
        ],  # fmt: skip
        cwd,
    )
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str | None]:
    """Installed distribution versions (None when a package is not installed).

    Read from package metadata rather than by importing, so it is cheap and cannot fail on a
    broken install.
    """
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info() -> dict[str, Any]:
    """The accelerator PyTorch sees: CUDA device name and compute capability, else ``"cpu"``.

    Returns:
        ``{"device": str, "cuda_capability": str | None, "cuda_device_count": int,
        "cuda_version": str | None}``; ``device`` is ``"cpu"`` without a usable GPU.
    """
    info: dict[str, Any] = {
        "device": "cpu",
        "cuda_capability": None,
        "cuda_device_count": 0,
        "cuda_version": None,
    }
    try:
        import torch

        info["cuda_version"] = torch.version.cuda
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            info["device"] = torch.cuda.get_device_name(0)
            info["cuda_capability"] = f"{major}.{minor}"
            info["cuda_device_count"] = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - provenance must never break a run
        pass
    return info


def collect(
    config: dict[str, Any] | None = None,
    wall_time_s: float | None = None,
    repo: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Provenance record of the current process.

    Args:
        config: the settings the result was produced with (stored verbatim; must be JSON-able).
        wall_time_s: how long the step took, in seconds, if the caller measured it.
        repo: a directory inside the git checkout to describe; see ``git_state``.

    Returns:
        A JSON-able dict with keys ``commit``, ``dirty``, ``timestamp_utc`` (ISO 8601),
        ``hostname``, ``platform``, ``python``, ``cpu_count``, ``versions`` (package -> version),
        ``device``, ``cuda_capability``, ``cuda_device_count``, ``cuda_version``, ``config``,
        ``wall_time_s``.
    """
    record: dict[str, Any] = dict(git_state(repo))
    record["timestamp_utc"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    try:
        record["hostname"] = socket.gethostname()
    except OSError:
        record["hostname"] = None
    record["platform"] = platform.platform()
    record["python"] = sys.version.split()[0]
    record["cpu_count"] = os.cpu_count()
    record["versions"] = package_versions()
    record.update(device_info())
    record["config"] = config
    record["wall_time_s"] = None if wall_time_s is None else float(wall_time_s)
    return record


def write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as indented JSON, atomically.

    The text goes to a temporary file in the same directory, is flushed to disk, then renamed
    over ``path`` (``os.replace``), so a reader (or a workflow manager checking outputs) never
    sees a half-written file even if the process dies mid-write. Parent directories are created.
    Non-JSON values (paths, numpy scalars) are written as ``str``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=indent, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results should be readable like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
