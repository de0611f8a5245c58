"""A fresh clone plans no training for a committed run, and plans it when its protocol changes.

A git checkout gives every file the time of the checkout and brings no .snakemake/metadata, so
file times and Snakemake's params trigger say nothing about the committed runs; the workflow
asks the runs' own records instead (workflow/scripts/run_records.py). This test clones the
repository it runs in (its committed state, HEAD) into a temporary folder, with ``shared``
beside it as in the real layout (the config's ``data_dir`` is ``../shared/data``), and dry-runs
the paper config there. Nothing is trained.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Rules that train: the SCNF runs (per family) and the Kingma et al. (2014) baselines.
TRAINING_RULES = ("train_toy", "train_mnist", "baseline_m1", "baseline_m2", "baseline_m1m2")
_RULE = re.compile(r"^(?:local)?rule (\w+):$")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/main``: a fresh clone of this repository, with ``<tmp>/shared`` beside it."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the repository")
    base = tmp_path_factory.mktemp("fresh")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(base / "main")], check=True, timeout=120)
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (base / "shared").symlink_to(shared.resolve(), target_is_directory=True)
    return base / "main"


def _dry_run(clone: Path, *args: str) -> str:
    """A verbose dry run of the clone's workflow (this interpreter's Snakemake); its stdout."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=clone, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return proc.stdout


def planned_training(dry_run: str) -> dict[str, set[str]]:
    """Rule -> run directories (relative) of the training jobs a dry run plans."""
    out: dict[str, set[str]] = {rule: set() for rule in TRAINING_RULES}
    rule = None
    for line in dry_run.splitlines():
        match = _RULE.match(line)
        if match:
            rule = match.group(1)
        elif rule in out and line.strip().startswith("output: "):
            first = line.strip().removeprefix("output: ").split(",")[0]
            out[rule].add(os.path.dirname(first))
            rule = None
    return out


def _committed_runs(clone: Path, rule: str) -> set[str]:
    """Run directories of ``rule``'s kind that the clone holds a metrics.json for."""
    pattern = {
        "train_toy": "results/paper/runs/[mc][oi]*/*/seed*/metrics.json",
        "train_mnist": "results/paper/runs/mnist/*/seed*/metrics.json",
        "baseline_m1": "results/paper/runs/baseline/m1/metrics.json",
        "baseline_m2": "results/paper/runs/baseline/m2/seed*/metrics.json",
        "baseline_m1m2": "results/paper/runs/baseline/m1m2/seed*/metrics.json",
    }[rule]
    return {str(p.parent.relative_to(clone)) for p in clone.glob(pattern)}


def test_fresh_clone_plans_no_training_of_a_committed_run(clone: Path) -> None:
    planned = planned_training(_dry_run(clone, "--configfile", "config/config.yaml"))
    committed = {rule: _committed_runs(clone, rule) for rule in TRAINING_RULES}
    assert committed["train_toy"] and committed["baseline_m2"], committed  # something to test
    for rule in TRAINING_RULES:
        assert not planned[rule] & committed[rule], (rule, sorted(planned[rule] & committed[rule]))
    # What is not committed is still planned: every SCNF MNIST run without a metrics.json.
    mnist = {f"results/paper/runs/mnist/{v}/seed{s}" for v, s in _mnist_runs(clone)}
    assert planned["train_mnist"] == mnist - committed["train_mnist"]


def _mnist_runs(clone: Path) -> set[tuple[str, int]]:
    cfg = yaml.safe_load((clone / "config" / "config.yaml").read_text())
    rows = {f"{r['head']}-{r['mode']}{'-clf' if r['clf'] else ''}-zf196"
            for r in cfg["mnist"]["table2"]}  # fmt: skip
    rows |= {f"glow-sgd-zf{z}" for z in cfg["mnist"]["table3"]["zf_dims"]}
    return {(v, s) for v in rows for s in cfg["seeds"]}


def test_fresh_clone_retrains_the_rows_whose_protocol_changed(clone: Path) -> None:
    cfg = yaml.safe_load((clone / "config" / "config.yaml").read_text())
    gmm = cfg["toy"]["head_settings"]["gmm"]
    overlay = clone.parent / "changed.yaml"
    # The GMM head's L_clf weight (Table 1's */gmm rows) and M2's schedule length.
    overlay.write_text(yaml.safe_dump({
        "toy": {"head_settings": {"gmm": {**gmm, "clf_weight": gmm["clf_weight"] + 1.0}}},
        "baseline": {"m2": {"epochs": cfg["baseline"]["m2"]["epochs"] + 1}},
    }))  # fmt: skip
    out = _dry_run(
        clone, "--configfile", "config/config.yaml", str(overlay),
        "--config", "families=[toy,baseline]",
    )  # fmt: skip
    planned = planned_training(out)
    toy = _committed_runs(clone, "train_toy")
    assert planned["train_toy"] == {d for d in toy if d.split("/")[-2].endswith("-gmm")}
    assert len(planned["train_toy"]) == 4 * len(cfg["seeds"])  # 2 datasets x 2 flows x seeds
    assert planned["baseline_m2"] == _committed_runs(clone, "baseline_m2")
    assert not planned["baseline_m1"] and not planned["baseline_m1m2"]
    # The reason names the changed key, in a note below .snakemake/ (not in results/).
    note = clone / ".snakemake/scnf/protocol/paper/moons/glow-gmm/seed0.txt"
    assert f"train.clf_weight: {gmm['clf_weight']} -> {gmm['clf_weight'] + 1.0}" in note.read_text()


def _planned_rules(dry_run: str) -> dict[str, int]:
    """Rule -> number of jobs a verbose dry run plans."""
    counts: dict[str, int] = {}
    for line in dry_run.splitlines():
        match = _RULE.match(line)
        if match:
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts


def test_a_retrained_run_is_planned_no_more_and_its_evaluation_is_redone(clone: Path) -> None:
    """A changed run, once retrained, is not planned again at the next call (its first jobs'
    inputs are the same whatever its state, so Snakemake's input trigger stays quiet), and its
    outdated evaluation is (one quick toy run; seconds of training; runs last in this module,
    it trains in the clone)."""
    quick = yaml.safe_load((clone / "config" / "quick.yaml").read_text())
    steps = quick["toy"]["train"]["max_steps"] - 100
    overlay = clone.parent / "quick-shorter.yaml"
    overlay.write_text(yaml.safe_dump({"toy": {"train": {**quick["toy"]["train"],
                                                         "max_steps": steps}}}))  # fmt: skip
    args = ("--configfile", "config/quick.yaml", str(overlay))
    run = "results/quick/runs/moons/glow-gmm/seed0"
    assert _planned_rules(_dry_run(clone, *args, "--", f"{run}/metrics.json")) == {
        "run_config": 1, "train_toy": 1, "evaluate_toy": 1,
    }  # fmt: skip
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", *args]
    # The jobs' shell commands call `python`: this interpreter's.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    trained = subprocess.run([*cmd, "--", f"{run}/train_metrics.json"], cwd=clone, env=env,
                             capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-5000:]
    # Retrained, not yet evaluated: the next call evaluates it, and trains nothing.
    assert _planned_rules(_dry_run(clone, *args, "--", f"{run}/metrics.json")) == {
        "evaluate_toy": 1
    }
    done = subprocess.run([*cmd, "--", f"{run}/metrics.json"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    recorded = json.loads((clone / run / "metrics.json").read_text())["provenance"]["config"]
    assert recorded["train"]["max_steps"] == steps
    assert _planned_rules(_dry_run(clone, *args, "--", f"{run}/metrics.json")) == {}
