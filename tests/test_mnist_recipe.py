"""The CPU protocol's MNIST recipe search (benchmarks/mnist_recipe_runs.py): its candidates are
valid run configs, a DAG run enters the search by its monitors only, and the committed README
table is the one the harness prints."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from scnf.train.config import run_config_from_dict

REPO = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location(
        "mnist_recipe_runs", REPO / "benchmarks" / "mnist_recipe_runs.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mnist_recipe_runs"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("candidate", sorted(_load().CANDIDATES))
def test_every_candidate_is_a_valid_run_config(candidate: str) -> None:
    runs = _load()
    cfg = run_config_from_dict(runs.run_config(candidate, 1, "../shared/data"))
    assert cfg.seed == 1 and cfg.dataset == "mnist"
    assert cfg.train.max_steps == runs.CANDIDATES[candidate]["train"].get("max_steps", 3000)


def test_a_dag_run_enters_the_search_by_its_monitors_only(tmp_path: Path) -> None:
    runs = _load()
    run_dir = tmp_path / "seed2"
    run_dir.mkdir()
    cfg = runs.run_config("g4-lab33-lr2e-3", 2, "../shared/data")
    (run_dir / "RUN.yaml").write_text(yaml.safe_dump(cfg))
    lines = [
        {"step": 938, "epoch": 1, "cpu_s": 200.0, "train_nll": -1.0, "mon_heldout_error": 50.0,
         "mon_labelled_error": 20.0, "mon_heldout_bpd": 2.0},
        {"step": 1000, "epoch": 1.07, "loss": 3.0},  # a training line without monitors
        {"step": 3000, "epoch": 3.2, "cpu_s": 600.0, "mon_heldout_error": 19.5,
         "mon_labelled_error": 0.0, "mon_heldout_bpd": 1.68},
    ]  # fmt: skip
    (run_dir / "train_log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (run_dir / "train_metrics.json").write_text(json.dumps({"provenance": {"commit": "abc"}}))
    (run_dir / "metrics.json").write_text(json.dumps({"test_error": 7.654321}))  # never read

    row = runs.protocol_run("dag-3000", run_dir)
    assert row["key"] == "dag-3000/seed2" and row["finished"] and row["trained_at"] == "abc"
    assert [c["step"] for c in row["curve"]] == [938, 3000]
    assert "7.654321" not in json.dumps(row)

    out = tmp_path / "runs.json"
    runs.main(["protocol", "--candidate", "dag-3000", "--out", str(out), str(run_dir)])
    table = runs.table(json.loads(out.read_text()))
    assert "| dag-3000 | 2 | 3000 x 64 | 600 | 19.5 @ 192 | 0.0 | 1.680 |" in table


def test_a_folder_without_a_run_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _load().main(["protocol", "--candidate", "x", "--out", str(tmp_path / "r.json"),
                      str(tmp_path)])  # fmt: skip
    assert not (tmp_path / "r.json").exists()


def test_the_committed_readme_table_is_the_printed_one() -> None:
    runs = _load()
    store = json.loads((REPO / "results/cpu-recipe/runs.json").read_text())
    readme = (REPO / "results/cpu-recipe/README.md").read_text()
    assert runs.table(store) in readme, "rerun `python benchmarks/mnist_recipe_runs.py table`"
