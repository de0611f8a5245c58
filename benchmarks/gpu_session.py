"""One time-boxed GPU session: benchmarks, precision check, sharing, short training, targets.

Run on the CUDA machine lent by the device tool (the copy of the tree sent there has no .git,
so the commit is declared through ``SCNF_GIT_COMMIT``):

    SCNF_GIT_COMMIT=<hash> PYTHONPATH=$PWD python3 benchmarks/gpu_session.py \\
        --out $OUT --data-dir .gpu/data --budget 560 --train-reserve 300

``--tiny --no-compile`` runs the same phases on a CPU with a small model in about a minute
(``tests/test_gpu_session.py``), so the script cannot rot between GPU sessions.

Phases, each bounded so that the whole script ends inside ``--budget`` seconds:
1. ``scnf bench`` on mnist-glow (authors' size, batch 256) in fp32 (with the cost ratios),
   tf32 and bf16, eager;
2. the same with torch.compile (reduce-overhead = CUDA graphs on a GPU), with a timeout;
3. bits/dim of the bf16 objective vs the fp32 one on the same weights and batch;
4. aggregate throughput of two benchmark processes sharing the device;
5. a short-schedule training of Table 2's SCNF-GLOW / SGD row (split seed 0), sized to the
   time left from the measured step time, then its test error and bits/dim.

Writes under ``--out``: ``session.json`` (provenance, hardware, every benchmark, the precision
check, the training config, log and final metrics, and each target of issue 5 with its
measured value), ``session.log`` (this script's progress lines) and the training run's small
files in ``run/`` (weights are deleted: too big to send back).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

START = time.perf_counter()
ANCHOR_IMAGES_PER_S = 820.0  # authors' code, bare training step, same H200 (shared/reference)
TMP = Path(tempfile.mkdtemp(prefix="gpu-session-"))
TINY_MODEL = dict(steps_per_level=1, hidden=16, head_steps=2, head_hidden=32)  # --tiny
LOG_FILE: Path | None = None


def left(budget: float) -> float:
    return budget - (time.perf_counter() - START)


def log(msg: str) -> None:
    line = f"[{time.perf_counter() - START:7.1f}s] {msg}"
    print(line, flush=True)
    if LOG_FILE is not None:
        with LOG_FILE.open("a") as fh:
            fh.write(line + "\n")


def scnf_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "scnf", *args]


def bench(name: str, args: list[str], timeout: float) -> dict | None:
    """Run `scnf bench ... --json` in a subprocess; None on failure or timeout."""
    out = TMP / f"{name}.json"
    cmd = scnf_cmd("bench", *args, "--json", str(out))
    log(f"{name}: " + " ".join(cmd[1:]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        log(f"{name}: timed out after {timeout:.0f}s")
        return None
    if proc.returncode != 0:
        log(f"{name}: failed\n" + proc.stderr[-3000:])
        return None
    print(proc.stdout, flush=True)
    return json.loads(out.read_text())


def bpd_check(model_overrides: dict) -> dict:
    """bits/dim of the training objective in bf16 autocast vs fp32, same weights and batch."""
    import scnf
    from scnf.data import bits_per_dim
    from scnf.train.objective import semi_supervised_objective

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = scnf.make_model("mnist-glow", **model_overrides).to(dev)
    noise = torch.rand(256, 1, 28, 28, device=dev)
    x = (torch.randint(0, 256, (256, 1, 28, 28), device=dev) + noise) / 256
    y = torch.randint(10, (85,), device=dev)
    model.train()
    semi_supervised_objective(model, x, y)  # ActNorm initialisation
    with torch.no_grad():
        for p in model.parameters():  # move off the identity initialisation
            p.add_(0.01 * torch.randn_like(p))
        ref = semi_supervised_objective(model, x, y).nll.item()
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            low = semi_supervised_objective(model, x, y).nll.item()
    a, b = bits_per_dim(-ref, 784), bits_per_dim(-low, 784)
    return {"bpd_fp32": a, "bpd_bf16": b, "abs_diff": abs(a - b)}


def shared_throughput(common: list[str], timeout: float) -> dict | None:
    """Two eager bf16 benchmark processes at once on the same device: aggregate images/s."""
    outs = [TMP / f"share{i}.json" for i in range(2)]
    args = [*common, "--precision", "bf16", "--skip-ratio"]
    procs = [
        subprocess.Popen(
            scnf_cmd("bench", *args, "--json", str(o)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for o in outs
    ]
    try:
        ok = all(p.wait(timeout=max(timeout, 5)) == 0 for p in procs)
    except subprocess.TimeoutExpired:
        ok = False
    for p in procs:
        p.kill()
    if not ok:
        log("shared: failed or timed out")
        return None
    shares = [json.loads(o.read_text())["train_images_per_s"] for o in outs]
    return {"per_process_images_per_s": shares, "aggregate_images_per_s": sum(shares)}


def hardware() -> dict:
    """GPU name, clocks, memory and driver from nvidia-smi (empty without one)."""
    if shutil.which("nvidia-smi") is None:
        return {}
    fields = "name,driver_version,memory.total,clocks.max.sm,power.limit"
    proc = subprocess.run(
        ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    values = [v.strip() for v in proc.stdout.splitlines()[0].split(",")] if proc.stdout else []
    return dict(zip(fields.split(","), values, strict=False))


def targets(bench_results: dict, precision: dict) -> dict:
    """Issue 5's targets, each with its measured value and whether it is met."""
    speeds = {
        k: v["train_images_per_s"]
        for k, v in bench_results.items()
        if v and "train_images_per_s" in v
    }
    best = max(speeds, key=speeds.get) if speeds else None
    fp32 = bench_results.get("eager-fp32") or {}

    def check(value, ok) -> dict:
        return {"value": value, "met": None if value is None else bool(ok(value))}

    return {
        "train_images_per_s >= 10 x anchor (8,200)": {
            **check(speeds.get(best), lambda v: v >= 10 * ANCHOR_IMAGES_PER_S),
            "from": best,
            "x_anchor": speeds[best] / ANCHOR_IMAGES_PER_S if best else None,
        },
        "cost_ratio <= 1.3": check(fp32.get("cost_ratio"), lambda v: v <= 1.3),
        "naive_cost_ratio >= 8": check(fp32.get("naive_cost_ratio"), lambda v: v >= 8),
        "bf16 vs fp32 bits/dim < 0.002": check(precision.get("abs_diff"), lambda v: v < 0.002),
    }


def train_config(a: argparse.Namespace, split: Path, steps: int, best: str, mode: str) -> dict:
    """Run config of the short schedule (Table 2, SCNF-GLOW, SGD, split seed 0)."""
    return {
        "name": "gpu-short-schedule",
        "dataset": "mnist",
        "preset": "mnist-glow",
        "seed": 0,
        "split": str(split),
        "model": dict(TINY_MODEL) if a.tiny else {},
        "data": {"dir": a.data_dir, "num_test": 500 if a.tiny else None},
        "train": {
            "mode": "sgd",
            "batch_size": 32 if a.tiny else 256,
            "labelled_fraction": 1 / 3,
            "epochs": 10_000,
            "max_steps": steps,
            "optimizer": "adam",
            "lr": 1e-3,
            "weight_decay": 0.0,
            "schedule": "linear",
            "warmup_steps": min(200, steps // 10),
            "grad_clip": 50.0,
            "checkpoint_every": max(steps // 3, 1),
            "eval_every": 10,
            "precision": "bf16" if "bf16" in best else best.split("-")[-1],
            "compile": best.startswith("compiled"),
            "compile_mode": mode,
            "progress": False,
        },
    }


def write_session(out: Path, session: dict) -> None:
    session["total_wall_s"] = time.perf_counter() - START
    (out / "session.json").write_text(json.dumps(session, indent=1, default=str))


def main() -> None:
    global LOG_FILE
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data-dir", default=".gpu/data")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole script")
    p.add_argument("--train-reserve", type=float, default=300.0, help="seconds kept for phase 5")
    p.add_argument("--tiny", action="store_true", help="small model and steps (CPU script test)")
    p.add_argument("--no-compile", action="store_true", help="skip phase 2")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    LOG_FILE = a.out / "session.log"
    LOG_FILE.write_text("")

    from scnf.provenance import collect

    session: dict = {
        "what": "benchmarks/gpu_session.py: one time-boxed session (issue 5)",
        "argv": sys.argv,
        "hardware": hardware(),
        "anchor_authors_images_per_s": ANCHOR_IMAGES_PER_S,
        "provenance": collect(vars(a) | {"out": str(a.out)}),
    }
    common = ["--preset", "mnist-glow", "--batch-size", "32" if a.tiny else "256"]
    common += ["--steps", "2" if a.tiny else "15", "--warmup", "1" if a.tiny else "3"]
    if a.tiny:
        common += ["--model", *(f"{k}={v}" for k, v in TINY_MODEL.items())]
    results: dict = {}

    def spare() -> float:  # seconds phases 1-4 may still use
        return left(a.budget) - a.train_reserve

    # 1. eager precisions; the cost ratios once, in fp32
    for prec in ["fp32", "tf32", "bf16"]:
        if spare() < 30:
            break
        extra = [] if prec == "fp32" else ["--skip-ratio"]
        results[f"eager-{prec}"] = bench(
            f"eager-{prec}", common + ["--precision", prec] + extra, spare()
        )
    # 2. compiled (CUDA graphs on a GPU)
    mode = "reduce-overhead" if torch.cuda.is_available() else "default"
    compile_start = time.perf_counter()
    if not a.no_compile and spare() - 45 > 30:
        name = f"compiled-bf16-{mode}"
        args = common + ["--precision", "bf16", "--compile", "--compile-mode", mode, "--skip-ratio"]
        results[name] = bench(name, args, min(200.0, spare() - 45))
    compile_cost = time.perf_counter() - compile_start
    # 3. precision check
    session["bpd_check"] = bpd_check(TINY_MODEL if a.tiny else {})
    log(f"bpd check: {session['bpd_check']}")
    # 4. two processes sharing the device
    if spare() > 40:
        results["shared-2x-bf16"] = shared_throughput(common, spare())
    session["bench"] = results
    session["targets"] = targets(results, session["bpd_check"])
    write_session(a.out, session)  # phases 1-4 are kept even if phase 5 fails

    # 5. short-schedule training sized to the time left
    timed = {k: v for k, v in results.items() if v and "train_step_ms" in v}
    if not timed:
        log("phase 5 skipped: no benchmark produced a step time")
        return
    best = min(timed, key=lambda k: timed[k]["train_step_ms"])
    step_s = timed[best]["train_step_ms"] / 1e3
    overhead = 45 + (compile_cost if best.startswith("compiled") else 0)  # data, eval, compile
    train_s = left(a.budget) - overhead - 15
    steps = 20 if a.tiny else max(10, int(train_s / step_s * 0.93))
    log(f"phase 5: {best} at {step_s * 1e3:.1f} ms/step -> {steps} steps in ~{train_s:.0f}s")
    run = a.out / "run"
    run.mkdir(parents=True, exist_ok=True)
    split = run / "split.json"
    subprocess.run(
        scnf_cmd("splits", "--dataset", "mnist", "--seed", "0", "--out", str(split))
        + ["--data-dir", a.data_dir],
        check=True,
    )
    cfg = train_config(a, split, steps, best, mode)
    (run / "run.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            scnf_cmd("train", "--config", str(run / "run.yaml"), "--out", str(run)),
            capture_output=True,
            text=True,
            timeout=max(left(a.budget) - 5, 10),
        )
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as err:
        stdout, stderr = str(err.stdout or ""), str(err.stderr or "") + "\nTIMED OUT"
    metrics_file, log_file = run / "train_metrics.json", run / "train_log.jsonl"
    session["train"] = {
        "config": cfg,
        "wall_s": time.perf_counter() - t0,
        "stdout_tail": stdout[-2000:],
        "stderr_tail": stderr[-3000:],
        "metrics": json.loads(metrics_file.read_text()) if metrics_file.exists() else None,
        "log": [json.loads(x) for x in log_file.read_text().splitlines()]
        if log_file.exists()
        else [],
    }
    for f in ["checkpoint.pt", "model.pt"]:
        (run / f).unlink(missing_ok=True)  # too big to send back
    write_session(a.out, session)
    log(stdout[-500:] + stderr[-1500:])
    log("targets: " + json.dumps({k: v["met"] for k, v in session["targets"].items()}))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
