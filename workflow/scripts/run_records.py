"""Is a run up to date? Asked of its own records, not of file modification times.

Snakemake compares file times: an input newer than an output reruns the job. A git checkout
gives every file the time of the checkout, in no particular order, so on a fresh clone the
committed runs look outdated (a split "newer" than the run trained on it) and would all be
retrained, and the params trigger that notices a changed setting needs ``.snakemake/metadata``,
which a clone does not have. Every run records what it was trained with and when, in the
``provenance`` (``config``: the run config as the job read it; ``timestamp_utc``) of its
``train_metrics.json`` (SCNF runs, end of training) and ``metrics.json`` (the evaluation; the
baselines' one job), so the workflow asks those records instead:

* ``current``: the training record holds the settings the config gives now (protocol keys
  only, see ``protocol_changes``). The training's inputs are then declared ``ancient()``
  (common.smk), and so are the trained model's for the jobs that read it when the evaluation
  record is current too and not older than the training: file times cannot make it look stale.
* ``changed``: the record holds other settings: the run is planned again (its first job's
  protocol note, an input of every run, is rewritten now and lists the changed keys).
* ``absent``: no readable record (never run, or not finished): file times decide, as usual.

Pure functions of JSON files; no Snakemake and no ``scnf`` import (DAG-build time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Settings that change nothing in a run's result; a copy of scnf.train.config's lists (the
# package needs torch, the DAG must not), kept equal by tests/test_workflow.py.
NOT_PROTOCOL_KEYS = frozenset(
    {"progress", "device", "checkpoint_every", "monitor_every", "monitor_every_steps",
     "monitor_size", "compile", "compile_mode"}
)  # fmt: skip
# Train keys added after runs had been recorded, with the value those runs were trained with: a
# record without the key reads as that value (a copy of scnf.train.config.ADDED_TRAIN_KEYS).
ADDED_TRAIN_KEYS = {"gmm_m_step": "closed-form"}
DATA_LOCATION_KEYS = frozenset({"dir", "download"})
# Sections compared as a whole: the model overrides (a dropped override changes the model).
WHOLE_SECTIONS = frozenset({"model"})
RECORD = "metrics.json"  # written last, by the evaluation (SCNF) or the baseline job
TRAIN_RECORD = "train_metrics.json"  # SCNF runs: written at the end of training


@dataclass(frozen=True)
class RunState:
    """What a run's records say.

    ``state``: ``current`` (the training record holds the config's protocol), ``changed`` (it
    holds another; ``changes`` names the keys) or ``absent`` (no record). ``evaluated``: the
    evaluation record is current too and not older than the training.
    """

    state: str
    changes: tuple[str, ...] = ()
    evaluated: bool = False

    @property
    def current(self) -> bool:
        return self.state == "current"

    @property
    def changed(self) -> bool:
        return self.state == "changed"


def _is_protocol(path: tuple[str, ...]) -> bool:
    if path == ("name",):
        return False
    if len(path) == 2 and path[0] == "data" and path[1] in DATA_LOCATION_KEYS:
        return False
    return not (len(path) == 2 and path[0] == "train" and path[1] in NOT_PROTOCOL_KEYS)


def protocol_changes(expected: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    """Protocol keys that the workflow sets in ``expected`` and whose value ``recorded`` differs in.

    ``expected`` is the run config the workflow writes now (RUN.yaml, BASELINE.json);
    ``recorded`` the config a run recorded (defaults filled in). Keys the workflow leaves to
    the code's defaults are not compared; nor are the display name, the data location and the
    settings that do not change the result (``NOT_PROTOCOL_KEYS``). Returns ``key: recorded ->
    expected`` strings, sorted.
    """
    out: list[str] = []

    def walk(exp: Any, rec: Any, path: tuple[str, ...]) -> None:
        if isinstance(exp, dict) and path and path[-1] not in WHOLE_SECTIONS:
            rec = rec if isinstance(rec, dict) else {}
            for key, value in exp.items():
                sub = (*path, str(key))
                walk(value, rec.get(key, _added_default(sub)), sub)
        elif path and _is_protocol(path) and not _same(exp, rec):
            shown = "absent" if rec is _MISSING else json.dumps(rec)
            out.append(f"{'.'.join(path)}: {shown} -> {json.dumps(exp)}")

    for key, value in expected.items():
        walk(value, recorded.get(key, _MISSING), (str(key),))
    return sorted(out)


_MISSING = object()


def _added_default(path: tuple[str, ...]) -> Any:
    """What a record without the key at ``path`` was trained with (see ``ADDED_TRAIN_KEYS``)."""
    if len(path) == 2 and path[0] == "train" and path[1] in ADDED_TRAIN_KEYS:
        return ADDED_TRAIN_KEYS[path[1]]
    return _MISSING


def _same(a: Any, b: Any) -> bool:
    """Equal as settings: lists and tuples alike, 1 == 1.0, nested alike."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _record(path: Path) -> tuple[dict[str, Any], str] | None:
    """``(config, timestamp)`` that a JSON product recorded in its ``provenance``, if any."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    prov = data.get("provenance") if isinstance(data, dict) else None
    if not isinstance(prov, dict) or not isinstance(prov.get("config"), dict):
        return None
    return prov["config"], str(prov.get("timestamp_utc") or "")


def run_state(run_dir: str | Path, expected: dict[str, Any]) -> RunState:
    """The state of the run in ``run_dir`` against the settings ``expected`` (see the module).

    The training record is ``train_metrics.json`` (SCNF runs) or else ``metrics.json`` (the
    baselines train and evaluate in one job); the evaluation record is ``metrics.json``.
    """
    run_dir = Path(run_dir)
    evaluation = _record(run_dir / RECORD)
    training = _record(run_dir / TRAIN_RECORD) or evaluation
    if training is None:
        return RunState("absent")
    changes = protocol_changes(expected, training[0])
    if changes:
        return RunState("changed", tuple(changes))
    evaluated = (
        evaluation is not None
        and not protocol_changes(expected, evaluation[0])
        and evaluation[1] >= training[1]  # ISO 8601 UTC times order as text
    )
    return RunState("current", evaluated=evaluated)


def write_protocol_note(path: str | Path, run_dir: str | Path, state: RunState) -> bool:
    """Write the run's protocol note, an input of its first job (common.smk); True if written.

    Every run has one, so that the set of a job's inputs never changes with the run's state
    (Snakemake's ``input`` trigger would otherwise plan a retrained run again at the next call,
    and then miss its outdated evaluation). A changed run's note names the changed keys and is
    rewritten at every call, so it is newer than the run's products and Snakemake plans the run;
    any other run's note is pinned (``ancient``) by the workflow and written only when its text
    differs.
    """
    path = Path(path)
    if state.changed:
        text = f"{run_dir}: recorded protocol differs from the config\n" + "".join(
            f"  {c}\n" for c in state.changes
        )
    elif state.current:
        text = f"{run_dir}: the recorded protocol is the config's\n"
    else:
        text = f"{run_dir}: no training record (file times decide)\n"
    if not state.changed and path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True
