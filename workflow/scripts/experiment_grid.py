"""The experiment grid of the paper's Tables 1-3, computed from the (validated) workflow config.

Pure functions, no Snakemake and no ``scnf`` import, so that ``workflow/rules/common.smk`` can
use them at DAG-build time in any environment and ``tests/test_workflow.py`` can test them.

A run is identified by ``(dataset, variant, seed)`` and lives in
``results/<name>/runs/<dataset>/<variant>/seed<seed>/``. Variant names:

* toy (Table 1): ``<f>-<h>``, e.g. ``ffjord-gmm`` -> preset ``toy-ffjord-gmm``.
* MNIST (Tables 2, 3): ``<h>-<mode>[-clf]-zf<zf_dim>``, e.g. ``glow-em-sgd-clf-zf196``.
  Table 3's run with ``zf_dim`` 196 is ``glow-sgd-zf196``: the same name, hence the same path
  and the same training job, as Table 2's SCNF-GLOW / SGD / no-L_clf row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

TOY_DATASETS = ("moons", "circles")
TABLE_IDS = ("table1", "table2", "table3")
# The z_f size of every Table 2 run; scnf.report.tables keys Table 2 on this value too.
TABLE2_ZF_DIM = 196
# Table 3 is SCNF-GLOW trained with plain SGD and without L_clf (the paper's setting).
TABLE3_HEAD, TABLE3_MODE = "glow", "sgd"

_TOY_VARIANT = re.compile(r"^(?P<f>glow|ffjord)-(?P<h>glow|gmm)$")
_MNIST_VARIANT = re.compile(r"^(?P<h>glow|gmm)-(?P<mode>sgd|em-sgd)(?P<clf>-clf)?-zf(?P<zf>\d+)$")


@dataclass(frozen=True, order=True)
class Run:
    """One training run of the grid."""

    dataset: str
    variant: str
    seed: int

    @property
    def key(self) -> str:
        """``<dataset>/<variant>/seed<seed>``: the run's path below ``results/<name>/runs``."""
        return f"{self.dataset}/{self.variant}/seed{self.seed}"


def toy_variant(flow: str, head: str) -> str:
    """Variant name of a Table 1 run with unconditional flow ``flow`` and head ``head``."""
    return f"{flow}-{head}"


def mnist_variant(head: str, mode: str, clf: bool, zf_dim: int) -> str:
    """Variant name of an MNIST run (Tables 2 and 3)."""
    return f"{head}-{mode}{'-clf' if clf else ''}-zf{zf_dim}"


def parse_variant(dataset: str, variant: str) -> dict[str, Any]:
    """What a variant name fixes: ``preset``; for a toy run ``f`` and ``h``; for MNIST ``mode``,
    ``clf`` (bool) and ``zf_dim``.

    Raises:
        ValueError: the name does not follow the scheme of ``dataset``'s family.
    """
    if dataset in TOY_DATASETS:
        m = _TOY_VARIANT.match(variant)
        if m is None:
            raise ValueError(f"toy variant {variant!r} is not '<glow|ffjord>-<glow|gmm>'")
        return {"preset": f"toy-{m['f']}-{m['h']}", "f": m["f"], "h": m["h"]}
    if dataset == "mnist":
        m = _MNIST_VARIANT.match(variant)
        if m is None:
            raise ValueError(
                f"MNIST variant {variant!r} is not '<glow|gmm>-<sgd|em-sgd>[-clf]-zf<dim>'"
            )
        return {
            "preset": f"mnist-{m['h']}",
            "mode": m["mode"],
            "clf": m["clf"] is not None,
            "zf_dim": int(m["zf"]),
        }
    raise ValueError(f"unknown dataset {dataset!r}")


# Run families and the tables they fill. `families` in the config picks which ones the DAG
# trains: the toy half runs on a CPU in minutes, the VAE baseline (Table 2's first rows) in
# about two hours on a CPU, the SCNF MNIST half needs GPUs.
FAMILIES = ("toy", "baseline", "mnist")
TABLE_FAMILY = {"table1": "toy", "table2": "mnist", "table3": "mnist"}


def families(config: dict[str, Any]) -> list[str]:
    """The run families this config trains (default: all)."""
    return list(config.get("families", FAMILIES))


def table_runs(config: dict[str, Any], table_id: str) -> list[Run]:
    """The runs whose metrics make up table ``table_id``, in table order, every seed.

    Empty when the table's family is not among ``config['families']``: the table is then
    written with every row "not run".
    """
    seeds = config["seeds"]
    if table_id in TABLE_FAMILY and TABLE_FAMILY[table_id] not in families(config):
        return []
    if table_id == "table1":
        toy = config["toy"]
        variants = [
            (d, toy_variant(f, h))
            for d in toy["datasets"]
            for f in toy["flows"]
            for h in toy["heads"]
        ]
    elif table_id == "table2":
        variants = [
            ("mnist", mnist_variant(r["head"], r["mode"], r["clf"], TABLE2_ZF_DIM))
            for r in config["mnist"]["table2"]
        ]
    elif table_id == "table3":
        variants = [
            ("mnist", mnist_variant(TABLE3_HEAD, TABLE3_MODE, False, zf))
            for zf in config["mnist"]["table3"]["zf_dims"]
        ]
    else:
        raise ValueError(f"unknown table {table_id!r}; choose one of {TABLE_IDS}")
    return [Run(d, v, s) for d, v in variants for s in seeds]


def all_runs(config: dict[str, Any]) -> list[Run]:
    """Every run of the three tables, each once (shared runs are trained once), in table order."""
    return list(dict.fromkeys(r for t in TABLE_IDS for r in table_runs(config, t)))


def fig2_runs(config: dict[str, Any]) -> list[Run]:
    """Fig. 2 reconstructs from the Table 3 runs of the first seed, one per ``zf_dim``."""
    first = config["seeds"][0]
    return [r for r in table_runs(config, "table3") if r.seed == first]


def toy_plot_runs(config: dict[str, Any]) -> list[Run]:
    """Appendix D plots: every Table 1 run of the first seed (one plot per dataset x f x h)."""
    first = config["seeds"][0]
    return [r for r in table_runs(config, "table1") if r.seed == first]


def run_settings(config: dict[str, Any], dataset: str, variant: str, seed: int) -> dict[str, Any]:
    """The content of a run's RUN.yaml (the CLI's run config), except ``split``.

    The workflow config's family section (``toy`` or ``mnist``) gives the model overrides, data
    subset and ``train`` section; the variant name gives preset, mode, L_clf and ``zf_dim``.
    A toy run's head may override ``mode``, ``clf_weight`` and ``train`` keys through
    ``toy.head_settings.<h>`` (e.g. EM-SGD for the GMM head). ``train.estep_every`` is
    recorded only for EM-SGD runs (null under SGD, where it does nothing), and
    ``train.gmm_m_step`` only for EM-SGD runs of the GMM head (left out of the others).
    The device is not part of it (it is passed on the command line), so moving a run to another
    device does not invalidate its results.
    """
    spec = parse_variant(dataset, variant)
    family = "mnist" if dataset == "mnist" else "toy"
    section = config[family]
    model = dict(section.get("model", {}))
    if family == "mnist":
        model["zf_dim"] = spec["zf_dim"]
        mode = spec["mode"]
        clf_weight = float(section["clf_weight"]) if spec["clf"] else 0.0
    else:
        head = section.get("head_settings", {}).get(spec["h"], {})
        mode = head.get("mode", section["mode"])
        clf_weight = float(head.get("clf_weight", section["clf_weight"]))
    data = {"dir": config["data_dir"], "download": config["download"]}
    data.update(section.get("data", {}))
    train = {"mode": mode, "clf_weight": clf_weight}
    train.update(section["train"])
    if family == "toy":
        train.update(head.get("train", {}))
    if train["mode"] != "em-sgd":
        # An EM-SGD key does nothing under SGD: recorded as null there, so that changing the
        # E-step interval retrains the EM-SGD runs only.
        train["estep_every"] = None
    if train["mode"] != "em-sgd" or not spec["preset"].endswith("-gmm"):
        # The GMM head's M-step under EM-SGD: left out of every other run, so that setting
        # it retrains only the runs it changes (and runs trained before it existed stay current).
        train.pop("gmm_m_step", None)
    return {
        "name": f"{config['name']}/{dataset}/{variant}/seed{seed}",
        "dataset": dataset,
        "preset": spec["preset"],
        "model": model,
        "seed": int(seed),
        "data": data,
        "train": train,
        "eval": dict(config["eval"]),
    }


# --- The measured baseline of Table 2: Kingma et al. (2014) ----------------------------------
# M1 is trained once per config (no labels) in runs/baseline/m1/; M2 and M1+M2 once per seed in
# runs/baseline/<model>/seed<seed>/, on the same label splits as the SCNF runs.
BASELINE_MODELS = ("m2", "m1m2")


def baseline_models(config: dict[str, Any]) -> list[str]:
    """The per-seed baselines this config trains, in table order (``baseline.models``; default
    both; none when the ``baseline`` family is left out of ``config['families']``)."""
    if "baseline" not in families(config):
        return []
    chosen = config.get("baseline", {}).get("models", list(BASELINE_MODELS))
    unknown = sorted(set(chosen) - set(BASELINE_MODELS))
    if unknown:
        raise ValueError(f"baseline.models: unknown {unknown}; choose from {list(BASELINE_MODELS)}")
    return [m for m in BASELINE_MODELS if m in chosen]


def baseline_models_left_out(config: dict[str, Any]) -> list[str]:
    """Baselines of a config that trains the ``baseline`` family but not this model."""
    if "baseline" not in families(config):
        return []
    return [m for m in BASELINE_MODELS if m not in baseline_models(config)]


def baseline_keys(config: dict[str, Any]) -> list[str]:
    """Run paths below ``results/<name>/runs/`` of the per-seed baselines, in table order."""
    return [f"baseline/{m}/seed{s}" for m in baseline_models(config) for s in config["seeds"]]


def baseline_metrics(config: dict[str, Any]) -> list[str]:
    """The baseline metrics.json files that feed Table 2 (below ``results/<name>/``)."""
    return [f"runs/{key}/metrics.json" for key in baseline_keys(config)]


def baseline_settings(
    config: dict[str, Any],
    model: str,
    seed: int | None = None,
    split: str | None = None,
    m1_run: str | None = None,
) -> dict[str, Any]:
    """The run config of ``scnf baseline-m1`` (``model="m1"``) or ``scnf baseline-m2``.

    ``split`` (and for ``m1m2`` the M1 run directory) are the paths the rule passes in; the
    training settings are the config's ``baseline.<model>`` section with the progress bar off.
    """
    section = config["baseline"]
    data = {"dir": config["data_dir"], "download": config["download"]}
    data.update(section.get("data", {}))
    train = dict(section[model])
    if model == "m1":
        m1_seed = int(train.pop("seed", 0))
        return {"name": f"{config['name']}/baseline/m1", "seed": m1_seed, "data": data,
                "train": {**train, "progress": False}}  # fmt: skip
    if model not in BASELINE_MODELS:
        raise ValueError(f"unknown baseline {model!r}; choose m1 or one of {BASELINE_MODELS}")
    out = {"name": f"{config['name']}/baseline/{model}/seed{seed}", "model": model,
           "seed": int(seed), "split": str(split), "data": data,
           "train": {**train, "progress": False}}  # fmt: skip
    if model == "m1m2":
        out["m1_run"] = str(m1_run)
    return out
