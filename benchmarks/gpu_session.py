"""One time-boxed GPU session: benchmarks, precision check, concurrency, short training.

Run on a CUDA machine (it also runs on CPU with ``--tiny`` to test the script):

    PYTHONPATH=. python benchmarks/gpu_session.py --out $OUT --data-dir .gpu/data --budget 540

Phases, each bounded so the whole script ends inside ``--budget`` seconds:
1. ``scnf bench`` on mnist-glow (authors' size, batch 256) in fp32, tf32 and bf16, eager;
2. the same with torch.compile (reduce-overhead: CUDA graphs) in a subprocess with a timeout;
3. bits/dim of the bf16 objective vs the fp32 one on the same batch (must agree within 0.002);
4. aggregate throughput of two benchmark processes sharing the GPU;
5. a short-schedule training of Table 2's SCNF-GLOW / SGD row (split seed 0) sized to the
   remaining time from the measured step time, then its test error and bits/dim.
Writes bench.json, session.json and the training run's logs under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

START = time.perf_counter()


def left(budget: float) -> float:
    return budget - (time.perf_counter() - START)


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f}s] {msg}", flush=True)


def bench(args: list[str], timeout: float) -> dict | None:
    """Run `python -m scnf bench ... --json` in a subprocess; None on failure / timeout."""
    out = Path(f"/tmp/bench-{abs(hash(tuple(args)))}.json")
    cmd = [sys.executable, "-m", "scnf", "bench", *args, "--json", str(out)]
    log("run: " + " ".join(cmd[1:]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        log(f"timed out after {timeout:.0f}s")
        return None
    if proc.returncode != 0:
        log("failed:\n" + proc.stderr[-3000:])
        return None
    print(proc.stdout, flush=True)
    return json.loads(out.read_text())


def bpd_check(tiny: bool) -> dict:
    """bits/dim of the training objective in bf16 autocast vs fp32, same weights and batch."""
    import scnf
    from scnf.data import bits_per_dim
    from scnf.train.objective import semi_supervised_objective

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    kw = dict(steps_per_level=1, hidden=16, head_steps=2, head_hidden=32) if tiny else {}
    model = scnf.make_model("mnist-glow", **kw).to(dev)
    x = (
        torch.randint(0, 256, (256, 1, 28, 28), device=dev) + torch.rand(256, 1, 28, 28, device=dev)
    ) / 256
    y = torch.randint(10, (85,), device=dev)
    model.train()
    semi_supervised_objective(model, x, y)  # ActNorm init
    with torch.no_grad():
        for p in model.parameters():  # move off the identity initialisation
            p.add_(0.01 * torch.randn_like(p))
        ref = semi_supervised_objective(model, x, y).nll.item()
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            low = semi_supervised_objective(model, x, y).nll.item()
    a, b = bits_per_dim(-ref, 784), bits_per_dim(-low, 784)
    return {"bpd_fp32": a, "bpd_bf16": b, "abs_diff": abs(a - b), "ok": abs(a - b) < 0.002}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data-dir", default=".gpu/data")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole script")
    p.add_argument(
        "--train-reserve",
        type=float,
        default=300.0,
        help="seconds kept for phase 5 (training + evaluation)",
    )
    p.add_argument("--tiny", action="store_true", help="small model and steps (CPU script test)")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    session: dict = {
        "argv": sys.argv,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    tiny = ["--model", "steps_per_level=1", "hidden=16", "head_steps=2", "head_hidden=32"]
    common = ["--preset", "mnist-glow", "--batch-size", "32" if a.tiny else "256"]
    common += ["--steps", "2" if a.tiny else "15", "--warmup", "1" if a.tiny else "3"]
    if a.tiny:
        common += tiny
    results = {}

    # 1. eager precisions
    for prec in ["fp32", "tf32", "bf16"]:
        if left(a.budget) - a.train_reserve < 30:
            break
        extra = [] if prec == "fp32" else ["--skip-ratio"]
        results[f"eager-{prec}"] = bench(
            common + ["--precision", prec] + extra, left(a.budget) - a.train_reserve
        )
    # 2. compiled (CUDA graphs on GPU)
    mode = "reduce-overhead" if torch.cuda.is_available() else "default"
    compile_start = time.perf_counter()
    budget_compile = min(200.0, left(a.budget) - a.train_reserve - 45)
    if budget_compile > 30:
        results[f"compiled-bf16-{mode}"] = bench(
            common + ["--precision", "bf16", "--compile", "--compile-mode", mode, "--skip-ratio"],
            budget_compile,
        )
    compile_cost = time.perf_counter() - compile_start
    # 3. precision check
    session["bpd_check"] = bpd_check(a.tiny)
    log(f"bpd check: {session['bpd_check']}")
    # 4. two processes sharing the device
    if left(a.budget) - a.train_reserve > 40:
        cmds = []
        for i in range(2):
            cmd = [
                sys.executable,
                "-m",
                "scnf",
                "bench",
                *common,
                "--precision",
                "bf16",
                "--skip-ratio",
                "--json",
                f"/tmp/share{i}.json",
            ]
            cmds.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        ok = all(c.wait(timeout=max(left(a.budget) - a.train_reserve, 5)) == 0 for c in cmds)
        if ok:
            shares = [json.loads(Path(f"/tmp/share{i}.json").read_text()) for i in range(2)]
            results["shared-2x-bf16"] = {
                "per_process_images_per_s": [s["train_images_per_s"] for s in shares],
                "aggregate_images_per_s": sum(s["train_images_per_s"] for s in shares),
            }
    (a.out / "bench.json").write_text(json.dumps(results, indent=1))

    # 5. short-schedule training sized to the time left
    candidates = {k: v for k, v in results.items() if v and "train_step_ms" in v}
    best = min(candidates, key=lambda k: candidates[k]["train_step_ms"])
    use_compile = best.startswith("compiled")
    step_s = candidates[best]["train_step_ms"] / 1e3
    overhead = 45 + (compile_cost if use_compile else 0)  # data, eval, compile, checkpoints
    train_s = left(a.budget) - overhead - 15
    steps = max(10, int(train_s / step_s * 0.93)) if not a.tiny else 20
    log(f"phase 5: {best} at {step_s * 1e3:.1f} ms/step -> {steps} steps in ~{train_s:.0f}s")
    run = a.out / "run"
    split = run / "split.json"
    run.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "scnf",
            "splits",
            "--dataset",
            "mnist",
            "--seed",
            "0",
            "--out",
            str(split),
            "--data-dir",
            a.data_dir,
        ],
        check=True,
    )
    cfg = {
        "name": "h200-short-schedule",
        "dataset": "mnist",
        "preset": "mnist-glow",
        "seed": 0,
        "split": str(split),
        "model": {"steps_per_level": 1, "hidden": 16, "head_steps": 2, "head_hidden": 32}
        if a.tiny
        else {},
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
            "compile": use_compile,
            "compile_mode": mode,
            "progress": False,
        },
    }
    (run / "run.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scnf",
            "train",
            "--config",
            str(run / "run.yaml"),
            "--out",
            str(run),
        ],
        capture_output=True,
        text=True,
        timeout=max(left(a.budget) - 5, 10),
    )
    session["train_wall_s"] = time.perf_counter() - t0
    session["train_stdout"] = proc.stdout[-2000:]
    session["train_stderr_tail"] = proc.stderr[-3000:]
    session["train_config"] = cfg
    for f in ["checkpoint.pt", "model.pt"]:
        (run / f).unlink(missing_ok=True)  # too big to send back
    session["total_wall_s"] = time.perf_counter() - START
    (a.out / "session.json").write_text(json.dumps(session, indent=1))
    log(proc.stdout[-500:] + proc.stderr[-1500:])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
