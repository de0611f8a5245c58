"""``gpu_session.py import``: take a GPU job's fetched files into results/<name>/, as the DAG's
own runs, so that Snakemake plans no training for them.

Each complete run lands where the workflow's rules put it, under their names: the run files,
RUN.yaml (or BASELINE.json) rewritten exactly as the rule writes it (after checking the device's
copy: only the data folder and the split's path may differ), the split, the benchmark TSVs the
report reads and a log naming the session. File times follow the DAG (split < run config <
training outputs < evaluation outputs; M1 < M1+M2), since Snakemake reruns a job whose output
is older than an input; ``--restamp`` sets them again after a clone (git keeps no times).
model.pt is not brought back (63 MB, over what a device call returns): Snakemake does not
rerun a job for a missing intermediate file whose consumers are up to date (tested with a real
dry run in tests/test_gpu_queue.py). Runs that did not complete stay evidence only, in
results/bench/gpu-queue/, beside the session's own record.

Also written: results/<name>/gpu_imports.json (which job, commit, device and date each run
came from) and results/<name>/imported.yaml, a config overlay naming only imported runs:
``snakemake --configfile config/h200.yaml results/h200/imported.yaml`` rebuilds the tables,
curves, Fig. 2 and the report from them, every other row shown as not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import gpu_queue as gq
import yaml
from gpu_common import REPO, script, workflow_config
from gpu_jobs import run_files

TSV_HEAD = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
LEDGER, OVERLAY = "gpu_imports.json", "imported.yaml"


def _tsv(path: Path, seconds: float) -> None:
    """A benchmark file as Snakemake's ``benchmark:`` writes it (the report reads ``s``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    hms = time.strftime("%H:%M:%S", time.gmtime(seconds))
    path.write_text(TSV_HEAD + f"{seconds:.4f}\t{hms}" + "\tNA" * 8 + "\n")


def _differences(dag: dict[str, Any], device: dict[str, Any]) -> list[str]:
    """Protocol keys whose value the device's run config does not share with the DAG's (the
    package's own ``protocol_view``: not the name, the data location or how it ran)."""
    from scnf.train.config import protocol_view

    a, b = protocol_view(dag), protocol_view(device)
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict) and key != "model":
            out += [f"{key}.{k}: DAG {x.get(k)!r} != device {y.get(k)!r}"
                    for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]  # fmt: skip
        elif x != y:
            out.append(f"{key}: DAG {x!r} != device {y!r}")
    return out


def _split(src_root: Path, results: Path, seed: int) -> str:
    """The run's split at the DAG's path (copied if missing; must equal one already there)."""
    rel = Path("splits") / "mnist" / f"seed{seed}.json"
    src, dst = src_root / rel, results / rel
    if dst.is_file():
        if json.loads(src.read_text())["labelled"] != json.loads(dst.read_text())["labelled"]:
            raise SystemExit(f"{dst} differs from the device's split: not importing over it")
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return (Path("results") / results.name / rel).as_posix()


def _log(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _scnf(cfg, key, src, dst, rec, results, src_root, note) -> None:
    grid, writer = script("experiment_grid"), script("run_config")
    dataset, variant, seed = key.split("/")
    seed_i = int(seed[4:])
    settings = grid.run_settings(cfg, dataset, variant, seed_i)
    split = _split(src_root, results, seed_i)
    bad = _differences({**settings, "split": split}, yaml.safe_load((src / "RUN.yaml").read_text()))
    if bad:
        raise SystemExit(f"{key}: the device ran another recipe than the DAG's: {bad}")
    dst.mkdir(parents=True, exist_ok=True)
    writer.write_run_config(settings, split, dst / "RUN.yaml")
    for f in run_files(key)[1:]:
        if (src / f).is_file():
            shutil.copy2(src / f, dst / f)
    tail = f"{dataset}/{variant}/{seed}"
    _tsv(results / "benchmarks" / "train" / f"{tail}.tsv", rec["wall_s"])
    _tsv(results / "benchmarks" / "evaluate" / f"{tail}.tsv", rec["evaluate_wall_s"])
    _log(results / "logs" / "run_config" / f"{tail}.log", [note])
    _log(results / "logs" / "train" / f"{tail}.log", [note, rec.get("stdout_tail", "")])
    _log(results / "logs" / "evaluate" / f"{tail}.log", [note, json.dumps(rec.get("metrics"))])
    if (dst / "recon.npz").is_file():
        _log(results / "logs" / "reconstruct" / f"{tail}.log", [note])


def _baseline(cfg, key, src, dst, rec, results, src_root, note) -> None:
    grid = script("experiment_grid")
    parts = key.split("/")
    model, seed = parts[1], int(parts[2][4:]) if len(parts) == 3 else None
    split = None if seed is None else _split(src_root, results, seed)
    m1_dir = (Path("results") / results.name / "runs" / "baseline" / "m1").as_posix()
    settings = grid.baseline_settings(cfg, model, seed, split, m1_dir)
    device = json.loads((src / "BASELINE.json").read_text())
    bad = _differences(settings, device)
    if bad:
        raise SystemExit(f"{key}: the device ran another recipe than the DAG's: {bad}")
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "BASELINE.json").write_text(json.dumps(settings) + "\n")  # as the rule's printf
    trained = yaml.safe_load((src / "config.yaml").read_text())  # the run's own record
    trained["data"]["dir"] = settings["data"]["dir"]
    for k in ("split", "m1_run"):
        if k in trained:
            trained[k] = settings[k]
    (dst / "config.yaml").write_text(yaml.safe_dump(trained, sort_keys=False))
    for f in run_files(key)[2:]:
        if (src / f).is_file():
            shutil.copy2(src / f, dst / f)
    tail = "m1" if seed is None else f"{model}/seed{seed}"
    _tsv(results / "benchmarks" / "baseline" / f"{tail}.tsv", rec["wall_s"])
    _log(results / "logs" / "baseline" / f"{tail}.log", [note, json.dumps(rec.get("fast"))])


def _outputs(results: Path, key: str) -> tuple[list[Path], list[Path], list[Path]]:
    """An imported run's files by DAG stage: run config, training outputs, evaluation outputs."""
    d, (fam, *rest) = results / "runs" / key, key.split("/")
    if fam == "baseline":
        tail = "m1" if len(rest) == 1 else "/".join(rest)
        files = [d / f for f in run_files(key)]
        files += [results / "benchmarks" / "baseline" / f"{tail}.tsv",
                  results / "logs" / "baseline" / f"{tail}.log"]  # fmt: skip
        return ([], files, []) if key == "baseline/m1" else ([], [], files)
    tail = "/".join([fam, *rest])
    bench, logs = results / "benchmarks", results / "logs"
    return (
        [d / "RUN.yaml", logs / "run_config" / f"{tail}.log"],
        [d / "train_log.jsonl", d / "train_metrics.json", d / "model.pt",
         bench / "train" / f"{tail}.tsv", logs / "train" / f"{tail}.log"],
        [d / "metrics.json", d / "recon.npz", bench / "evaluate" / f"{tail}.tsv",
         logs / "evaluate" / f"{tail}.log", logs / "reconstruct" / f"{tail}.log"],
    )  # fmt: skip


def restamp(results: Path, keys: list[str]) -> None:
    """File times in DAG order for the runs ``keys`` of ``results`` (= results/<name>/): splits
    no later than now, then run configs, training outputs and evaluation outputs 1 s apart."""
    now = time.time() - 10
    for split in (results / "splits").rglob("*.json"):
        if split.stat().st_mtime > now:
            os.utime(split, (now, now))
    for key in keys:
        for offset, files in enumerate(_outputs(results, key), start=1):
            for f in files:
                if f.exists():
                    os.utime(f, (now + offset, now + offset))


def overlay(cfg: dict[str, Any], results_root: Path) -> dict[str, Any]:
    """The config overlay naming only runs whose results are in: the prefix of the seeds that
    shows most runs, the Table 2 rows and Table 3 sizes done for all of them, the baselines
    likewise (Table 3 needs its z_f 196 run, which is Table 2's first row)."""
    grid = script("experiment_grid")
    best: tuple[int, int, dict[str, Any]] | None = None
    seeds_all = list(cfg["seeds"])
    for n in range(1, len(seeds_all) + 1):
        seeds = seeds_all[:n]

        def done(key_of_seed, seeds=seeds) -> bool:
            return all(gq.is_done(results_root, cfg, key_of_seed(s)) for s in seeds)

        def variant(r: dict[str, Any]) -> str:
            return grid.mnist_variant(r["head"], r["mode"], r["clf"], grid.TABLE2_ZF_DIM)

        rows = [
            r for r in cfg["mnist"]["table2"] if done(lambda s, r=r: f"mnist/{variant(r)}/seed{s}")
        ]
        zfs = [
            z
            for z in cfg["mnist"]["table3"]["zf_dims"]
            if done(lambda s, z=z: f"mnist/glow-sgd-zf{z}/seed{s}")
        ]
        m1 = gq.is_done(results_root, cfg, "baseline/m1")
        models = [
            m
            for m in grid.BASELINE_MODELS
            if done(lambda s, m=m: f"baseline/{m}/seed{s}") and (m != "m1m2" or m1)
        ]
        fams, over = [], {"seeds": seeds}
        if rows and zfs:
            fams.append("mnist")
            over["mnist"] = {"table2": rows, "table3": {"zf_dims": zfs}}
        if models:
            fams.append("baseline")
            over["baseline"] = {"models": models}
        over["families"] = fams
        shown = (len(rows) + len(set(zfs) - {196}) if rows and zfs else 0) * n + len(models) * n
        if best is None or shown >= best[0]:
            best = (shown, n, over)
    assert best is not None
    return best[2]


def write_overlay(cfg: dict[str, Any], config_file: Path, results_root: Path) -> Path:
    rel = config_file.relative_to(REPO).as_posix()
    path = results_root / cfg["name"] / OVERLAY
    head = (
        f"# Written by `python benchmarks/gpu_session.py import`: the runs of {rel} imported\n"
        f"# from GPU sessions so far.\n"
        f"#   snakemake --configfile {rel} "
        f"{path.relative_to(results_root.parent).as_posix()} --cores 2\n"
        "# rebuilds tables, curves, Fig. 2 and the report from them alone (no training); rows\n"
        "# and seeds not listed here are shown as not run.\n"
    )
    path.write_text(head + yaml.safe_dump(overlay(cfg, results_root), sort_keys=False))
    return path


def _cleanup_metadata(workdir: Path, config_file: Path, files: list[Path]) -> None:
    """Drop Snakemake's records of the imported files, if it kept any: they would compare the
    rules' code and params of an earlier local attempt, not of these runs."""
    if not (workdir / ".snakemake" / "metadata").is_dir() or not files:
        return
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile",
           str(config_file), "--directory", str(workdir), "--cleanup-metadata",
           *map(str, files)]  # fmt: skip
    subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)


def import_fetched(
    fetched: Path, workdir: Path = REPO, allow_tiny: bool = False, force: bool = False
) -> dict[str, Any]:
    """Import the job in ``fetched`` (session.json, session.log, results.tar.gz)."""
    session = json.loads((fetched / "session.json").read_text())
    if "job" not in session:
        raise SystemExit(f"{fetched}: not a queue job's session.json (issue 14's session?)")
    if session["tiny"] and not allow_tiny:
        raise SystemExit(f"{fetched}: a --tiny run is a CPU test, not results (--allow-tiny)")
    job = session["job"]
    config_file = REPO / job["config"]
    cfg = workflow_config(config_file, session["tiny"])
    results_root = workdir / "results"
    results = results_root / cfg["name"]
    date = session["provenance"]["timestamp_utc"][:10]
    evidence = results_root / "bench" / "gpu-queue" / f"{date}-{job['id']}"
    evidence.mkdir(parents=True, exist_ok=True)
    for f in ("session.json", "session.log"):
        if (fetched / f).is_file():
            shutil.copy2(fetched / f, evidence / f)
    note = (
        f"imported from GPU queue job {job['id']} ({date}, commit "
        f"{session['provenance'].get('commit')}, {session['hardware'].get('name', 'no GPU')}): "
        f"{evidence.relative_to(workdir).as_posix()}/session.json"
    )
    ledger_path = results / LEDGER
    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {"runs": {}}
    done, kept = [], []
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fetched / "results.tar.gz") as tar:
            tar.extractall(tmp, filter="data")
        src_root = Path(tmp) / "results" / cfg["name"]
        for rec in session["runs"]:
            key, src = rec["key"], src_root / "runs" / rec["key"]
            if rec["status"] != "complete":
                if src.is_dir():
                    shutil.copytree(src, evidence / key, dirs_exist_ok=True)
                kept.append(key)
                continue
            dst = results / "runs" / key
            if (dst / "metrics.json").is_file() and not force:
                raise SystemExit(f"{dst} holds results already (--force replaces them)")
            kind = _baseline if key.startswith("baseline/") else _scnf
            kind(cfg, key, src, dst, rec, results, src_root, note)
            ledger["runs"][key] = {
                "job": job["id"],
                "session": f"{evidence.relative_to(workdir).as_posix()}/session.json",
                "commit": session["provenance"].get("commit"),
                "device": session["hardware"].get("name"),
                "date": date,
                "wall_s": rec.get("wall_s"),
                "tiny": session["tiny"],
            }
            done.append(key)
    ledger["runs"] = dict(sorted(ledger["runs"].items()))
    results.mkdir(parents=True, exist_ok=True)
    ledger_path.write_text(json.dumps(ledger, indent=1) + "\n")
    restamp(results, list(ledger["runs"]))
    imported_files = [f for k in done for stage in _outputs(results, k) for f in stage]
    _cleanup_metadata(workdir, config_file, imported_files)
    over = write_overlay(cfg, config_file, results_root)
    return {"imported": done, "evidence_only": kept, "evidence": evidence, "overlay": over}


def main(a: argparse.Namespace) -> int:
    if a.restamp:
        for ledger in sorted((a.workdir / "results").glob(f"*/{LEDGER}")):
            restamp(ledger.parent, list(json.loads(ledger.read_text())["runs"]))
            print(f"{ledger.parent}: file times reset to DAG order")
        return 0
    if a.fetched is None:
        raise SystemExit("import: name the folder holding the fetched session.json")
    out = import_fetched(a.fetched, a.workdir, a.allow_tiny, a.force)
    print(f"imported {out['imported'] or 'nothing'}; evidence only: {out['evidence_only']}")
    print(f"session record: {out['evidence']}; overlay: {out['overlay']}")
    print(f"rebuild: snakemake --configfile config/h200.yaml {out['overlay']} --cores 2")
    return 0
