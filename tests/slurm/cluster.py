"""Helpers for tests that run the workflow on a real, local single-node SLURM cluster.

The cluster itself is brought up and down by ``cluster_up.sh`` / ``cluster_down.sh`` beside
this file (munged + slurmctld + slurmd from Debian's packages, partitions ``cpu`` and ``gpu``,
two fake GPUs). This module wraps them so a test can never leave daemons behind, and parses
what the Snakemake SLURM executor logs, so tests can check the ``sbatch`` lines it built.

Import it from tests under ``tests/slurm/`` as ``from cluster import running_cluster`` (pytest
puts a test's directory on ``sys.path``); the ``slurm_cluster`` fixture in ``conftest.py`` wraps
:func:`running_cluster` for a whole session.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
UP_SCRIPT = HERE / "cluster_up.sh"
DOWN_SCRIPT = HERE / "cluster_down.sh"
PROFILE_DIR = REPO_ROOT / "workflow" / "profiles" / "slurm"
PARTITIONS = ["cpu", "gpu"]
DEFAULT_STATE_DIR = "/tmp/scnf-slurm"
# Debian puts the daemons in /usr/sbin, which a non-login PATH may lack.
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
# apt-get install of munge + slurm takes ~10 s on a warm mirror; allow for a slow one.
_INSTALL_ALLOWANCE_S = 300

_SBATCH_CALL = "sbatch call:"
_RULE_COMMENT = re.compile(r"--comment\s+rule_(\w+?)(?:_wildcards_\S*)?(?:\s|$)")


def state_dir() -> Path:
    """The cluster's state directory (config, munge key, logs, pid files)."""
    return Path(os.environ.get("SCNF_SLURM_DIR", DEFAULT_STATE_DIR))


def skip_reason() -> str | None:
    """Why the SLURM tests cannot run here, or ``None`` if they can.

    The scripts start daemons directly (no systemd) and install Debian packages on demand,
    so they need Linux, root, and either the SLURM daemons already installed or ``apt-get``.
    """
    if not sys.platform.startswith("linux"):
        return f"local SLURM cluster needs Linux (platform is {sys.platform})"
    if os.geteuid() != 0:
        return "local SLURM cluster needs root (daemons are started directly)"
    have_slurm = shutil.which("slurmctld", path=_SBIN_PATH) is not None
    if not have_slurm and shutil.which("apt-get") is None:
        return "neither slurmctld nor apt-get (to install it) is available"
    return None


def _run_script(script: Path, env: dict[str, str], timeout_s: float) -> str:
    """Run one of the shell scripts; raise with its full output if it fails."""
    proc = subprocess.run(
        ["bash", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} failed (rc={proc.returncode}):\n{out}")
    return out


@contextmanager
def running_cluster(timeout_s: int = 600) -> Iterator[dict[str, object]]:
    """Bring the local cluster up, yield facts about it, and always bring it down again.

    ``SLURM_CONF`` is exported into ``os.environ`` for the duration, so client commands and
    Snakemake find this cluster even where ``/etc/slurm/slurm.conf`` is a site's own file.

    Args:
        timeout_s: Seconds the up script may wait for ``scontrol ping`` and an idle node
            (package installation, if needed, gets extra time on top).

    Yields:
        ``{"state_dir": str, "slurm_conf": str, "partitions": ["cpu", "gpu"],
        "up_log": str}``.

    Raises:
        RuntimeError: If the up script fails (its output, with daemon logs, is in the message).
    """
    sdir = state_dir()
    conf = sdir / "slurm.conf"
    env = {
        **os.environ,
        "PATH": _SBIN_PATH,
        "SCNF_SLURM_DIR": str(sdir),
        "SCNF_SLURM_TIMEOUT": str(timeout_s),
    }
    old_conf = os.environ.get("SLURM_CONF")
    try:
        # Inside the try: a partial start (munged up, slurmctld failed) is still torn down.
        up_log = _run_script(UP_SCRIPT, env, timeout_s + _INSTALL_ALLOWANCE_S)
        os.environ["SLURM_CONF"] = str(conf)
        yield {
            "state_dir": str(sdir),
            "slurm_conf": str(conf),
            "partitions": list(PARTITIONS),
            "up_log": up_log,
        }
    finally:
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        _run_script(DOWN_SCRIPT, env, 120)


def snakemake_command(snakefile: Path, workdir: Path, *extra: str) -> list[str]:
    """A Snakemake call through the SLURM profile, verbose so the sbatch lines are logged.

    Run it with ``subprocess.run(..., timeout=...)``: should status polling ever fall back to
    ``sacct`` without accounting, Snakemake waits for ever and ignores SIGTERM (the timeout
    sends SIGKILL). The interpreter is this one, which the jobs reuse inside the allocation.
    """
    return [
        sys.executable, "-m", "snakemake",
        "--profile", str(PROFILE_DIR),
        "--snakefile", str(snakefile),
        "--directory", str(workdir),
        "--verbose",
        *extra,
    ]  # fmt: skip


def sbatch_lines(log_text: str) -> list[str]:
    """The sbatch command lines in a Snakemake log, in submission order.

    The SLURM executor (2.x) logs ``sbatch call: sbatch ... --wrap="..."`` at debug level,
    i.e. only with ``snakemake --verbose``; without it the log only says ``Job N has been
    submitted with SLURM jobid M``. A failed submission is reported as ``sbatch call:`` on
    its own line followed by the command, which is handled too.
    """
    lines = log_text.splitlines()
    calls: list[str] = []
    for i, line in enumerate(lines):
        pos = line.find(_SBATCH_CALL)
        if pos < 0:
            continue
        rest = line[pos + len(_SBATCH_CALL) :].strip()
        if not rest:
            rest = next((nxt.strip() for nxt in lines[i + 1 :] if nxt.strip()), "")
        if rest.startswith("sbatch"):
            calls.append(rest)
    return calls


def sbatch_rule(line: str) -> str | None:
    """The Snakemake rule an sbatch line submits (from its ``--comment rule_<name>...``)."""
    match = _RULE_COMMENT.search(line)
    return match.group(1) if match else None


def sbatch_options(line: str) -> str:
    """The sbatch options of a line, without the ``--wrap`` payload (the job's own command)."""
    return line.split(" --wrap=", 1)[0]
