# Shared paths, wildcard constraints and input functions. The experiment grid itself (which runs
# make up which table) is plain Python in workflow/scripts/experiment_grid.py, tested on its own.

import os
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow", "scripts"))

import experiment_grid as grid  # noqa: E402
import run_records  # noqa: E402


wildcard_constraints:
    dataset="moons|circles|mnist",
    variant=r"[a-z0-9]+(-[a-z0-9]+)*",
    seed=r"\d+",
    table="table[123]",


# Rules so cheap that a cluster job would cost more than the work.
localrules:
    all,
    run_config,
    runs,
    toy_limits,
    table,
    curves,
    fig2,
    claims,
    report,


RUNS = grid.all_runs(config)


def res(path):
    """``path`` below this configuration's results folder, results/<name>/."""
    return os.path.join("results", config["name"], path)


RUN_DIR = res("runs/{dataset}/{variant}/seed{seed}")
LOGS = res("logs")
BENCH = res("benchmarks")


# Per-family rules (train_toy / train_mnist, evaluate_toy / evaluate_mnist) match their runs
# by dataset, so that a SLURM profile can route the MNIST ones to a GPU partition by rule name.
TOY_DATASETS = "|".join(grid.TOY_DATASETS)
MNIST_DATASETS = "mnist"


def rule_resource(rule_name, key, fam=None):
    """One resource value of a rule from config['resources'].

    ``fam`` (``toy`` or ``mnist``) picks the family section of per-family rules (train,
    evaluate), whose toy and MNIST jobs are separate rules.
    """
    spec = config["resources"][rule_name]
    return spec[key] if fam is None else spec[fam][key]


def job_resources(rule_name, fam=None):
    """The ``resources:`` of a rule (mem_mb, runtime in minutes, gpu) from config['resources']."""
    return {key: rule_resource(rule_name, key, fam) for key in ("mem_mb", "runtime", "gpu")}


def run_settings(wildcards):
    """The RUN.yaml content of one run (a params value, so a change in it reruns the run)."""
    return grid.run_settings(config, wildcards.dataset, wildcards.variant, int(wildcards.seed))


# --- Up to date by the runs' own records, not by file times (workflow/scripts/run_records.py) --
# A git checkout stamps every file with the time of the checkout, so on a fresh clone file times
# say nothing about which committed run came from which input, and .snakemake/metadata (params,
# code) is absent. A run whose training record (train_metrics.json; a baseline's metrics.json)
# holds the protocol the config gives now is "current": the inputs of its training are ancient(),
# and so are its model's for the jobs that read it when its evaluation record is current too, so
# it is not retrained or re-evaluated for a file time. Every run's first jobs take its protocol
# note as an input (the same set of inputs whatever the state, so Snakemake's input trigger stays
# quiet); a run that recorded another protocol is "changed": its note is rewritten now and names
# the changed keys, so Snakemake plans it and everything after it; otherwise the note is pinned.
# A pin is dropped where --forcerun / -R names the rule that makes the pinned file or one before
# it (or names a file of the runs or splits): the forced jobs' products are then redone, as
# without pins.
SPLIT = res("splits/{dataset}/seed{seed}.json")
# The rules whose forcing unpins a file made by the key rule (that rule and those before it).
_MADE_AFTER = {
    "splits": {"splits"},
    "run_config": {"splits", "run_config"},
    "train": {"splits", "run_config", "train_toy", "train_mnist"},
    "baseline_m1": {"baseline_m1"},
}


def _forced_before(maker):
    """Whether --forcerun names ``maker`` or a rule before it, or any file of the runs/splits."""
    settings = getattr(workflow, "dag_settings", None)
    forced = {str(x) for x in (getattr(settings, "forcerun", None) or ())}
    rule_names = {r.name for r in workflow.rules}
    files = {os.path.normpath(f) for f in forced - rule_names}
    run_files = any(f.startswith((res("runs"), res("splits"))) for f in files)
    return run_files or bool(forced & _MADE_AFTER[maker])


def protocol_note(run_key):
    """The protocol note of a run, an input of its first jobs (below .snakemake/, not results)."""
    return os.path.join(".snakemake", "scnf", "protocol", config["name"], f"{run_key}.txt")


_STATES = {}


def _state(run_key, expected):
    """run_records.run_state of ``runs/<run_key>`` (read once per invocation); writes the run's
    protocol note."""
    if run_key not in _STATES:
        run_dir = res(f"runs/{run_key}")
        state = run_records.run_state(run_dir, expected)
        run_records.write_protocol_note(protocol_note(run_key), run_dir, state)
        _STATES[run_key] = state
    return _STATES[run_key]


def _run_key(wildcards):
    return f"{wildcards.dataset}/{wildcards.variant}/seed{wildcards.seed}"


def scnf_state(wildcards):
    """The record state of an SCNF run (dataset, variant, seed wildcards)."""
    split = SPLIT.format(dataset=wildcards.dataset, seed=wildcards.seed)
    expected = {**run_settings(wildcards), "split": split}
    return _state(_run_key(wildcards), expected)


def pin(path, maker, current=True):
    """``ancient(path)`` for a current run (file times then cannot outdate it), else ``path``.

    ``maker``: the rule that writes ``path`` (a key of ``_MADE_AFTER``).
    """
    return ancient(path) if current and not _forced_before(maker) else path


def run_config_inputs(wildcards):
    """The split (a function of its name: always pinned) and the run's protocol note."""
    inputs = {"split": pin(SPLIT, "splits")}
    return {**inputs, **_note_input(wildcards)}


def train_inputs(wildcards):
    """RUN.yaml and the split of a training job, pinned when the run is current, and the run's
    protocol note (which reruns a changed run's training even where RUN.yaml is missing)."""
    current = scnf_state(wildcards).current
    return {
        "config": pin(os.path.join(RUN_DIR, "RUN.yaml"), "run_config", current),
        "split": pin(SPLIT, "splits"),
        **_note_input(wildcards),
    }


def _note(run_key, state):
    """The run's protocol note as an input: new for a changed run, pinned for any other."""
    return {"protocol": protocol_note(run_key) if state.changed else ancient(protocol_note(run_key))}


def _note_input(wildcards):
    """``{"protocol": note}`` of an SCNF run (see ``_note``)."""
    return _note(_run_key(wildcards), scnf_state(wildcards))


def trained_inputs(wildcards):
    """model.pt and train_metrics.json for the jobs that read a trained run; pinned when the run
    is current and so is its evaluation.

    A current run keeps its committed products even where model.pt is not committed (MNIST and
    results/quick/): nothing that reads it is planned.
    """
    state = scnf_state(wildcards)
    current = state.current and state.evaluated
    return {
        "model": pin(os.path.join(RUN_DIR, "model.pt"), "train", current),
        "train_metrics": pin(os.path.join(RUN_DIR, "train_metrics.json"), "train", current),
    }


def run_path(run, filename):
    """Path of ``filename`` in the run directory of ``run`` (an experiment_grid.Run)."""
    return res(f"runs/{run.key}/{filename}")


def table_metric_paths(table_id):
    """The metrics.json of every run (all seeds) of table ``table_id``.

    Table 2 also gets the measured Kingma et al. (2014) baselines (workflow/rules/baseline.smk).
    """
    paths = [run_path(r, "metrics.json") for r in grid.table_runs(config, table_id)]
    if table_id == "table2":
        paths += [res(p) for p in grid.baseline_metrics(config)]
    return paths


def table_metrics(wildcards):
    """Input function: ``table_metric_paths`` of the rule's ``{table}`` wildcard."""
    return table_metric_paths(wildcards.table)


def fig2_inputs(wildcards):
    """One reconstruction per Table 3 z_f size, first seed."""
    return [run_path(r, "recon.npz") for r in grid.fig2_runs(config)]


def fig2_outputs(wildcards=None):
    """Fig. 2, when the config trains the MNIST family (it reconstructs from those runs)."""
    return [res("figures/fig2.png")] if grid.fig2_runs(config) else []


def toy_plot_path(run):
    return res(f"figures/toy/{run.dataset}/{run.variant}/seed{run.seed}.png")


def toy_plot_inputs(wildcards):
    return [toy_plot_path(r) for r in grid.toy_plot_runs(config)]


def toy_plot_captions(wildcards):
    """Report captions of the toy plots, in the order of ``toy_plot_inputs``."""
    return [
        f"Appendix D: {r.dataset}, f = {r.variant.split('-')[0]}, "
        f"h = {r.variant.split('-')[1]}, seed {r.seed}"
        for r in grid.toy_plot_runs(config)
    ]


def benchmarks(step):
    """Benchmark files of ``step`` (train or evaluate) for every run of the grid."""
    return [os.path.join(BENCH, step, f"{r.key}.tsv") for r in RUNS]


def baseline_benchmarks(wildcards=None):
    """Benchmark files of the baseline jobs (M1 once, M2 and M1+M2 per seed), if any."""
    keys = grid.baseline_keys(config)
    m1 = ["baseline/m1"] if "m1m2" in grid.baseline_models(config) else []
    return [os.path.join(BENCH, f"{k}.tsv") for k in [*m1, *keys]]


def all_metrics(wildcards=None):
    """The metrics.json of every run of every table, each once (the input of runs.csv)."""
    return list(dict.fromkeys(p for t in grid.TABLE_IDS for p in table_metric_paths(t)))


def table_outputs():
    return expand(res("tables/{table}.{ext}"), table=grid.TABLE_IDS, ext=("csv", "md"))


def final_outputs():
    """Final targets: runs.csv, the tables and their curves, Fig. 2, the toy plots, the
    baselines' metrics and REPORT.md."""
    return [
        *table_outputs(),
        res("runs.csv"),
        *expand(res("figures/curves/{table}.png"), table=grid.TABLE_IDS),
        *fig2_outputs(),
        *[toy_plot_path(r) for r in grid.toy_plot_runs(config)],
        *[res(p) for p in grid.baseline_metrics(config)],
        res("REPORT.md"),
    ]


# --- The baselines' records (workflow/rules/baseline.smk) ---------------------------------
BASELINE_DIR = res("runs/baseline")
MNIST_SPLIT = res("splits/mnist/seed{seed}.json")


def baseline_state(model, seed=None):
    """The record state of a baseline run (workflow/rules/common.smk, run_records.py)."""
    if model == "m1":
        return _state("baseline/m1", grid.baseline_settings(config, "m1"))
    split = MNIST_SPLIT.format(seed=seed)
    m1_run = os.path.join(BASELINE_DIR, "m1") if model == "m1m2" else None
    expected = grid.baseline_settings(config, model, int(seed), split, m1_run)
    return _state(f"baseline/{model}/seed{seed}", expected)


def baseline_inputs(model):
    """Input function of a baseline rule: the split (M2, M1+M2), M1's model (M1+M2; pinned when
    both runs are current) and the run's protocol note."""

    def inputs(wildcards):
        seed = getattr(wildcards, "seed", None)
        state = baseline_state(model, seed)
        out = {}
        if model != "m1":
            out["split"] = pin(MNIST_SPLIT, "splits")
        if model == "m1m2":
            current = state.current and baseline_state("m1").current
            out["m1"] = pin(os.path.join(BASELINE_DIR, "m1", "model.pt"), "baseline_m1", current)
        key = "baseline/m1" if model == "m1" else f"baseline/{model}/seed{seed}"
        return {**out, **_note(key, state)}

    return inputs
