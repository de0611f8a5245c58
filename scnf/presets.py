"""``make_model(preset, **overrides)``: the SCNF variants the experiments use.

| preset            | f_w                      | h_phi                 | classes | input     |
|-------------------|--------------------------|-----------------------|---------|-------------|
| toy-glow-glow     | 2-D Glow                 | conditional 2-D Glow  | 2       | (B, 2)    |
| toy-glow-gmm      | 2-D Glow                 | class Gaussian        | 2       | (B, 2)    |
| toy-ffjord-glow   | 2-D FFJORD               | conditional 2-D Glow  | 2       | (B, 2)    |
| toy-ffjord-gmm    | 2-D FFJORD               | class Gaussian        | 2       | (B, 2)    |
| mnist-glow        | multi-scale image Glow   | conditional Glow      | 10      | (B,1,28,28) |
| mnist-gmm         | multi-scale image Glow   | class Gaussian        | 10      | (B,1,28,28) |

MNIST inputs are dequantised pixels in [0, 1]; the logit transform is f_w's first layer.

Defaults: the toy f_w are sized so that Glow and FFJORD have about the same
number of parameters (as the paper asks); ``mnist-glow`` has about the authors'
15.9M parameters (f_w about 6M, h_phi about 9M).
"""

from __future__ import annotations

from typing import Any

from scnf.conditional import ClassGaussian, ConditionalDensity, ConditionalGlow
from scnf.flows import FFJORD, MultiScaleGlow, VectorGlow
from scnf.layers import Flow
from scnf.model import SCNF

DEFAULTS: dict[str, dict[str, Any]] = {
    "toy": {
        "num_classes": 2,
        "flow_steps": 8,  # 2-D Glow f_w
        "flow_hidden": 64,
        "ffjord_hidden": 128,  # 2-D FFJORD f_w
        "ffjord_layers": 3,
        "ffjord_end_time": 1.0,
        "ffjord_method": "dopri5",
        "ffjord_atol": 1e-5,
        "ffjord_rtol": 1e-5,
        "ffjord_adjoint": False,
        # Training-mode solver (eval keeps dopri5 at 1e-5): 1e-3 cuts the NFE per solve by about
        # a third at no cost in validation NLL (benchmarks/toy_speed.py); None = eval's.
        "ffjord_train_method": None,
        "ffjord_train_atol": 1e-3,
        "ffjord_train_rtol": 1e-3,
        "ffjord_divergence": "forward",
        "head_steps": 4,
        "head_hidden": 64,
        "head_layers": 2,
        "class_prior": None,
    },
    "mnist": {
        "num_classes": 10,
        "input_shape": (1, 28, 28),
        "zf_dim": 196,
        "levels": 3,  # at least; z_f of 98 / 49 adds one / two factor-out levels
        "steps_per_level": 6,
        "hidden": 512,
        "logit_alpha": 0.05,
        "head_steps": 16,
        "head_hidden": 512,
        "head_layers": 2,
        "class_prior": None,
    },
}

PRESETS: dict[str, tuple[str, str, str]] = {
    # name: (family, f_w kind, h_phi kind)
    "toy-glow-glow": ("toy", "glow", "glow"),
    "toy-glow-gmm": ("toy", "glow", "gmm"),
    "toy-ffjord-glow": ("toy", "ffjord", "glow"),
    "toy-ffjord-gmm": ("toy", "ffjord", "gmm"),
    "mnist-glow": ("mnist", "glow", "glow"),
    "mnist-gmm": ("mnist", "glow", "gmm"),
}


def preset_options(preset: str) -> dict[str, Any]:
    """The default options of ``preset`` (every key ``make_model`` accepts as override)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return dict(DEFAULTS[PRESETS[preset][0]])


def make_model(preset: str, **overrides: Any) -> SCNF:
    """Build the SCNF variant ``preset``; ``overrides`` replace entries of ``preset_options``."""
    opts = preset_options(preset)
    unknown = sorted(set(overrides) - set(opts))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for preset {preset!r}; allowed: {sorted(opts)}"
        )
    opts.update(overrides)
    family, flow_kind, head_kind = PRESETS[preset]
    flow = _make_flow(family, flow_kind, opts)
    head = _make_head(head_kind, flow.zf_dim, opts)
    return SCNF(flow, head, opts["class_prior"])


def _make_flow(family: str, kind: str, o: dict[str, Any]) -> Flow:
    if family == "mnist":
        return MultiScaleGlow(
            tuple(o["input_shape"]),
            o["zf_dim"],
            o["steps_per_level"],
            o["hidden"],
            o["logit_alpha"],
            o["levels"],
        )
    if kind == "glow":
        return VectorGlow(2, o["flow_steps"], o["flow_hidden"])
    return FFJORD(
        2,
        o["ffjord_hidden"],
        o["ffjord_layers"],
        o["ffjord_end_time"],
        o["ffjord_method"],
        o["ffjord_atol"],
        o["ffjord_rtol"],
        o["ffjord_adjoint"],
        o["ffjord_train_method"],
        o["ffjord_train_atol"],
        o["ffjord_train_rtol"],
        o["ffjord_divergence"],
    )


def _make_head(kind: str, dim: int, o: dict[str, Any]) -> ConditionalDensity:
    if kind == "gmm":
        return ClassGaussian(dim, o["num_classes"])
    return ConditionalGlow(
        dim, o["num_classes"], o["head_steps"], o["head_hidden"], o["head_layers"]
    )
