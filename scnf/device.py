"""Where a job runs: device resolution, precision switches, and the CPU-time guard.

Both the training loop and the evaluation import this module; it imports neither, so
data flows one way (config -> device -> training / evaluation).
"""

from __future__ import annotations

import torch

from scnf.train.config import TrainConfig

# Seconds per (parameter x object) of one fp32 training step on a CPU, calibrated on the
# project's 2-core development machine with `python -m scnf bench --preset mnist-glow`
# (results/bench/cpu-mnist-glow-b64.json: 2.85 s per step of batch 64, 15,801,892
# parameters = 2.8e-9; batch 256 took 16.7 s = 4.1e-9). The faster of the two is used, so
# the estimate errs towards letting a run through.
CPU_SECONDS_PER_PARAM_OBJECT = 2.8e-9
# `device: auto` that falls back to the CPU refuses runs estimated above this.
CPU_REFUSAL_SECONDS = 24 * 3600.0


class CPUTooSlowError(ValueError):
    """``device: auto`` found no GPU and the run would take too long on the CPU."""


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA where visible, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
    return torch.device(device)


def configure_precision(t: TrainConfig, device: torch.device) -> torch.dtype | None:
    """TF32 switches and the autocast dtype (bf16 only reaches the conditioner networks).

    The fast path is for CUDA; on a CPU training is always float32 (bf16 is slow on most
    CPUs), so one config runs anywhere.
    """
    if device.type != "cuda":
        return None
    allow = t.precision in ("tf32", "bf16")
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    return torch.bfloat16 if t.precision == "bf16" else None


def estimated_cpu_seconds(num_params: int, batch_size: int, steps: int) -> float:
    """A cheap estimate of a run's training time on a CPU: parameters x batch x steps x c.

    The cost of a flow's training step grows about linearly with both its parameter count
    and its batch; ``c = CPU_SECONDS_PER_PARAM_OBJECT`` was measured on this project's CPU
    machine. FFJORD's solver cost is not covered (the toy FFJORD runs are small anyway).
    """
    return CPU_SECONDS_PER_PARAM_OBJECT * num_params * batch_size * steps


def check_cpu_fallback(
    requested: str, device: torch.device, num_params: int, batch_size: int, steps: int
) -> None:
    """Refuse a run that ``auto`` put on the CPU when it would take more than a day there.

    An explicit ``cpu`` is never refused: whoever asks for it knows.

    Raises:
        CPUTooSlowError: with the estimated time and how to force the run.
    """
    if requested != "auto" or device.type != "cpu":
        return
    seconds = estimated_cpu_seconds(num_params, batch_size, steps)
    if seconds > CPU_REFUSAL_SECONDS:
        raise CPUTooSlowError(
            f"device 'auto' found no GPU, and this run ({num_params:,} parameters, batch "
            f"{batch_size}, {steps:,} steps) would take about {seconds / 3600:,.0f} hours "
            f"({seconds / 86400:,.1f} days) on the CPU. Run it on a GPU, or force the CPU "
            "with `device: cpu` in the run config's train section (or `--device cpu`)."
        )
