# Shared paths, wildcard constraints and input functions. The experiment grid itself (which runs
# make up which table) is plain Python in workflow/scripts/experiment_grid.py, tested on its own.

import os
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow", "scripts"))

import experiment_grid as grid  # noqa: E402


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
