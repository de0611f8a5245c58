"""The Snakemake workflow: lint, dry-run job counts, config validation, grid, environments.

Nothing here runs a training job: the dry runs plan the DAG only (the CLI is needed at execution
time). The end-to-end run of the smoke configuration is tests/test_smoke_dag.py.
"""

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"paper": ROOT / "config/config.yaml", "quick": ROOT / "config/quick.yaml",
           "smoke": ROOT / "config/smoke.yaml", "h200": ROOT / "config/h200.yaml",
           "cpu": ROOT / "config/cpu.yaml"}  # fmt: skip


def _load_script(name: str) -> ModuleType:
    """Import ``workflow/scripts/<name>.py`` under a private module name."""
    path = ROOT / "workflow" / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_wf_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


grid = _load_script("experiment_grid")


SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
BAD_OVERLAY = "toy:\n  trian: {lr: 1.0}\n"


def _snakemake(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run this interpreter's Snakemake on the repository's Snakefile."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every Snakemake invocation of this module, run concurrently.

    Each start of the CLI costs seconds (plugin discovery; where the SLURM client is installed
    but no controller answers, the SLURM plugin's `scontrol` probe alone waits about 9 s), so
    the invocations run side by side and the tests only read their output.
    """
    tmp = tmp_path_factory.mktemp("wf")
    (tmp / "bad.yaml").write_text(BAD_OVERLAY)
    profile = ROOT / "workflow" / "profiles" / "default"
    calls: dict[str, tuple[Any, ...]] = {
        "lint": ("--lint",),
        # Default (verbose) dry run: it also prints every job's resources. --forceall plans the
        # whole DAG even where results are committed (results/quick/ is).
        "paper": ("-n", "--forceall", "--configfile", CONFIGS["paper"],
                  "--workflow-profile", profile),
        "quick": ("-n", "--forceall", "--quiet", "rules", "--configfile", CONFIGS["quick"]),
        # In an empty directory with a renamed output folder, as tests/test_smoke_dag.py runs it.
        "smoke": ("-n", "--configfile", CONFIGS["smoke"],
                  "--directory", tmp, "--config", "name=elsewhere"),
        "bad": ("-n", "--configfile", tmp / "bad.yaml"),
        # The toy half of the paper config alone, as results/paper/ was produced on a CPU.
        "toy_half": ("-n", "--forceall", "--quiet", "rules", "--configfile", CONFIGS["paper"],
                     "--config", "families=[toy]"),
        "cpu": ("-n", "--forceall", "--quiet", "rules", "--configfile", CONFIGS["cpu"]),
    }  # fmt: skip
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = {k: pool.submit(_snakemake, *args) for k, args in calls.items()}
        return {k: f.result() for k, f in futures.items()}


def job_counts(output: str) -> dict[str, int]:
    """The `Job stats` table of a dry run as {rule: count} (total under 'total')."""
    match = re.search(r"Job stats:\njob\s+count\n[-\s]+\n(.*?)\n\n", output, re.S)
    assert match, output[-3000:]
    counts = {}
    for line in match.group(1).splitlines():
        name, count = line.split()
        counts[name] = int(count)
    return counts


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load(CONFIGS[name].read_text())


# --- Snakemake itself: lint and dry runs -----------------------------------------------------


def test_lint_is_clean(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    proc = runs["lint"]
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out
    assert "Congratulations" in out


# Paper grid: Table 1 2 datasets x 2 f x 2 h; Table 2 six rows; Table 3 five z_f sizes of which
# 196 is Table 2's glow/sgd/no-clf row, so it adds 4. Per seed: 8 + 6 + 4 = 18 runs.
TOY_RUNS = 8 * 3
MNIST_RUNS = (6 + 4) * 3
PAPER_RUNS = TOY_RUNS + MNIST_RUNS
PAPER_COUNTS = {
    "splits": 3 * 3,  # (moons, circles, mnist) x seeds
    "run_config": PAPER_RUNS,
    # One rule per family, so that the SLURM profile routes the MNIST ones to GPUs by name.
    "train_toy": TOY_RUNS,
    "train_mnist": MNIST_RUNS,
    "evaluate_toy": TOY_RUNS,
    "evaluate_mnist": MNIST_RUNS,
    "reconstruct": 5,  # one per Table 3 z_f size, first seed
    "toy_plots": 8,  # every Table 1 grid point, first seed
    "runs": 1,  # runs.csv + curves.csv, the tables' single input
    "toy_limits": 1,  # Table 1's entropy and Bayes error columns
    "table": 3,
    "curves": 3,  # one figure of monitored metrics per table
    "fig2": 1,
    "claims": 1,  # the paper's conclusions tested on the runs (scnf/report/claims.py)
    "report": 1,
    "all": 1,
    # The measured Kingma et al. (2014) baseline of Table 2: M1 once, M2 and M1+M2 per seed.
    "baseline_m1": 1,
    "baseline_m2": 3,
    "baseline_m1m2": 3,
}


def test_paper_dag_job_counts(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    proc = runs["paper"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    counts = job_counts(proc.stdout)
    assert (TOY_RUNS, MNIST_RUNS, PAPER_RUNS) == (24, 30, 54)
    assert counts.pop("total") == sum(PAPER_COUNTS.values()) == 203
    assert counts == PAPER_COUNTS


def _job_blocks(output: str, rule: str) -> list[str]:
    """The dry-run description of every job of ``rule`` (rule line to the blank line)."""
    return [b.split("\n\n")[0] for b in output.split(f"rule {rule}:\n")[1:]]


@pytest.mark.parametrize(
    ("rule", "datasets", "n", "gpu"),
    [
        ("train_toy", "moons|circles", TOY_RUNS, 0),
        ("train_mnist", "mnist", MNIST_RUNS, 1),
        ("evaluate_toy", "moons|circles", TOY_RUNS, 0),
        ("evaluate_mnist", "mnist", MNIST_RUNS, 1),
    ],
)
def test_family_rules_take_their_resources_from_the_config(
    runs: dict[str, subprocess.CompletedProcess[str]], rule: str, datasets: str, n: int, gpu: int
) -> None:
    """Each family rule matches only its datasets and asks for its config section's resources.

    At paper scale only the MNIST rules ask for a GPU; the SLURM profile routes those by name.
    """
    step, family = rule.split("_")
    spec = load("paper")["resources"][step][family]
    assert spec["gpu"] == gpu
    blocks = _job_blocks(runs["paper"].stdout, rule)
    assert len(blocks) == n
    for block in blocks:
        assert re.search(rf"wildcards: dataset=({datasets}),", block), block
        assert f"gpu={gpu}," in block, block
        assert f"runtime={spec['runtime']}," in block and f"mem_mb={spec['mem_mb']}," in block


def test_slurm_profile_routes_gpu_rules_by_name() -> None:
    """GPU partition for the rules that may ask for a GPU, and nothing else set per rule."""
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    per_rule = profile["set-resources"]
    assert sorted(per_rule) == ["evaluate_mnist", "train_mnist"]
    default_partition = profile["default-resources"]["slurm_partition"]
    for rule, resources in per_rule.items():
        # Wall time and memory stay the config's: a profile value would override them.
        assert set(resources) <= {"slurm_partition", "gpu_model"}, rule
        assert resources["slurm_partition"] != default_partition, rule
    assert len({r["slurm_partition"] for r in per_rule.values()}) == 1  # one GPU partition


def test_quick_is_the_same_dag(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    proc = runs["quick"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    counts = job_counts(proc.stdout)
    counts.pop("total")
    assert counts == PAPER_COUNTS


def test_toy_half_of_the_paper_dag(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """families=[toy]: Table 1's runs and the report, no MNIST job and no Fig. 2."""
    proc = runs["toy_half"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    counts = job_counts(proc.stdout)
    assert counts["train_toy"] == counts["evaluate_toy"] == TOY_RUNS
    assert counts["report"] == 1 and counts["table"] == 3
    assert not {"train_mnist", "evaluate_mnist", "reconstruct", "fig2"} & set(counts)


def test_cpu_protocol_dag(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """config/cpu.yaml: every MNIST row of Tables 2 and 3 (6 + 4 extra z_f) x 3 seeds and
    Fig. 2, on the CPU, one thread per run; no toy or baseline job (results/paper has those)."""
    proc = runs["cpu"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    counts = job_counts(proc.stdout)
    assert counts["train_mnist"] == counts["evaluate_mnist"] == (6 + 4) * 3
    assert counts["reconstruct"] == 5 and counts["fig2"] == 1 and counts["report"] == 1
    assert not {"train_toy", "baseline_m1", "baseline_m2", "baseline_m1m2"} & set(counts)
    cfg = load("cpu")
    assert cfg["device"] == "cpu" and cfg["resources"]["train"]["mnist"]["threads"] == 1
    assert cfg["protocol"]["follows_paper"] is False


def test_smoke_dag(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """One seed and Table 3 sizes 49 and 196 (shared); outputs under the overriding name."""
    proc = runs["smoke"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    toy, mnist = 8, 6 + 1
    assert job_counts(proc.stdout) == {
        "splits": 3, "run_config": toy + mnist, "train_toy": toy, "train_mnist": mnist,
        "evaluate_toy": toy, "evaluate_mnist": mnist, "reconstruct": 2,
        "toy_plots": 8, "runs": 1, "toy_limits": 1, "table": 3, "curves": 3, "fig2": 1,
        "claims": 1, "report": 1, "all": 1, "baseline_m1": 1, "baseline_m2": 1,
        "baseline_m1m2": 1,
        "total": 3 + 3 * (toy + mnist) + 2 + 8 + 1 + 1 + 3 + 3 + 1 + 1 + 1 + 1 + 3,
    }  # fmt: skip
    assert "results/elsewhere/REPORT.md" in proc.stdout
    assert "results/smoke/" not in proc.stdout


# --- Config validation ------------------------------------------------------------------------


def test_snakemake_refuses_a_bad_key(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    proc = runs["bad"]  # the overlay is merged on top of config/config.yaml
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Error validating config file" in out, out[-2000:]
    assert "'trian' was unexpected" in out, out[-2000:]
    assert "Job stats" not in out


def _validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Validate as the Snakefile does (snakemake.utils.validate, filling in defaults)."""
    from snakemake.utils import validate

    validate(cfg, str(SCHEMA))
    return cfg


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shipped_configs_validate(name: str) -> None:
    cfg = _validate(load(name))
    assert cfg["name"] == name


def test_schema_fills_defaults() -> None:
    cfg = load("smoke")
    for key in ("resources", "eval", "fig2", "data_dir", "download", "device"):
        del cfg[key]
    del cfg["toy"]["mode"], cfg["mnist"]["model"]
    cfg = _validate(cfg)
    assert cfg["resources"]["train"]["mnist"] == {
        "threads": 1, "mem_mb": 2000, "runtime": 30, "gpu": 0}  # fmt: skip
    assert cfg["eval"] == {"batch_size": 512} and cfg["fig2"] == {"num_images": 10}
    assert (cfg["data_dir"], cfg["download"], cfg["device"]) == ("../shared/data", False, "auto")
    assert cfg["toy"]["mode"] == "sgd" and cfg["mnist"]["model"] == {}


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("toy", "trian"), {"lr": 1.0}, "'trian' was unexpected"),
        (("mnist", "train", "learning_rate"), 1.0, "'learning_rate' was unexpected"),
        (("resources", "train", "toy", "gpus"), 1, "'gpus' was unexpected"),
        (("mnist", "model", "zf_dim"), 49, "'zf_dim' was unexpected"),
        (("mnist", "train", "lr"), "fast", "On instance['mnist']['train']['lr']"),
        (("seeds",), 3, "On instance['seeds']"),
        (("toy", "flows"), ["realnvp"], "On instance['toy']['flows'][0]"),
        (("mnist", "table3", "zf_dims"), [100], "On instance['mnist']['table3']['zf_dims'][0]"),
        (("device",), "gpu", "On instance['device']"),
    ],
)
def test_bad_config_is_refused_naming_the_key(
    path: tuple[str, ...], value: Any, named: str
) -> None:
    cfg = load("paper")
    node = cfg
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(Exception, match="Error validating config file") as err:
        _validate(cfg)
    assert named in str(err.value)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """What Snakemake does with --configfile on top of the Snakefile's configfile."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("name", ["quick", "smoke", "h200", "cpu"])
def test_small_configs_are_self_contained(name: str) -> None:
    """Merging over config/config.yaml changes nothing: no paper value leaks into them."""
    small = load(name)
    assert _deep_merge(load("paper"), small) == small


# --- The experiment grid ----------------------------------------------------------------------


def test_table3_196_is_table2_run() -> None:
    cfg = load("paper")
    t2 = grid.table_runs(cfg, "table2")
    t3 = grid.table_runs(cfg, "table3")
    shared = set(t2) & set(t3)
    assert {r.variant for r in shared} == {"glow-sgd-zf196"}
    assert len(shared) == 3
    assert len(grid.all_runs(cfg)) == PAPER_RUNS
    assert len(set(grid.all_runs(cfg))) == PAPER_RUNS


def test_table2_zf_dim_matches_the_table_code() -> None:
    tables = pytest.importorskip("scnf.report.tables")
    assert grid.TABLE2_ZF_DIM == tables.TABLE2_ZF_DIM


@pytest.mark.parametrize(
    ("dataset", "variant", "spec"),
    [
        ("moons", "ffjord-gmm", {"preset": "toy-ffjord-gmm", "f": "ffjord", "h": "gmm"}),
        ("mnist", "glow-sgd-zf49",
         {"preset": "mnist-glow", "mode": "sgd", "clf": False, "zf_dim": 49}),
        ("mnist", "gmm-em-sgd-clf-zf196",
         {"preset": "mnist-gmm", "mode": "em-sgd", "clf": True, "zf_dim": 196}),
    ],
)  # fmt: skip
def test_parse_variant(dataset: str, variant: str, spec: dict[str, Any]) -> None:
    assert grid.parse_variant(dataset, variant) == spec


@pytest.mark.parametrize(
    ("dataset", "variant"), [("mnist", "glow-glow"), ("moons", "glow-sgd-zf196"), ("cifar", "x")]
)
def test_parse_variant_refuses(dataset: str, variant: str) -> None:
    with pytest.raises(ValueError):
        grid.parse_variant(dataset, variant)


def test_run_settings_compose_config_and_variant() -> None:
    cfg = load("quick")
    cfg.setdefault("eval", {"batch_size": 512})
    s = grid.run_settings(cfg, "mnist", "gmm-em-sgd-clf-zf98", 2)
    assert s["preset"] == "mnist-gmm" and s["seed"] == 2
    assert s["model"] == {**cfg["mnist"]["model"], "zf_dim": 98}
    assert s["train"]["mode"] == "em-sgd"
    assert s["train"]["clf_weight"] == cfg["mnist"]["clf_weight"] > 0
    assert s["train"]["max_steps"] == cfg["mnist"]["train"]["max_steps"]
    assert s["data"] == {"dir": cfg["data_dir"], "download": False, **cfg["mnist"]["data"]}
    assert "device" not in s["train"]  # a device change must not retrain anything
    no_clf = grid.run_settings(cfg, "mnist", "gmm-em-sgd-zf98", 2)
    assert no_clf["train"]["clf_weight"] == 0.0
    toy = grid.run_settings(cfg, "circles", "glow-gmm", 0)
    assert toy["preset"] == "toy-glow-gmm" and toy["model"] == cfg["toy"]["model"]
    assert toy["train"]["optimizer"] == cfg["toy"]["train"]["optimizer"]


def test_the_e_step_interval_is_a_setting_of_em_sgd_runs_only() -> None:
    """train.estep_every reaches the EM-SGD runs' RUN.yaml; SGD runs record null (it does nothing
    there), so changing it retrains no SGD run."""
    cfg = load("cpu")
    assert cfg["mnist"]["train"]["estep_every"] == 235
    em = grid.run_settings(cfg, "mnist", "gmm-em-sgd-clf-zf196", 0)["train"]
    sgd = grid.run_settings(cfg, "mnist", "glow-sgd-zf196", 0)["train"]
    assert (em["estep_every"], sgd["estep_every"]) == (235, None)
    cfg["mnist"]["train"]["estep_every"] = 100
    assert grid.run_settings(cfg, "mnist", "glow-em-sgd-zf196", 0)["train"]["estep_every"] == 100
    assert grid.run_settings(cfg, "mnist", "glow-sgd-zf196", 0)["train"] == sgd


def test_the_gmm_m_step_is_a_setting_of_gmm_em_sgd_runs_only() -> None:
    """train.gmm_m_step reaches the RUN.yaml of EM-SGD runs with the GMM head only; every other
    run leaves it out, so setting it retrains no other run (nor a run trained before it)."""
    cfg = load("cpu")
    assert cfg["mnist"]["train"]["gmm_m_step"] == "gradient"
    for variant in ("gmm-em-sgd-clf-zf196", "gmm-em-sgd-zf196"):
        assert grid.run_settings(cfg, "mnist", variant, 0)["train"]["gmm_m_step"] == "gradient"
    for variant in ("gmm-sgd-zf196", "glow-em-sgd-zf196", "glow-sgd-zf49"):
        assert "gmm_m_step" not in grid.run_settings(cfg, "mnist", variant, 0)["train"]
    paper = load("paper")  # the key left to the code's default (closed form): not recorded
    assert "gmm_m_step" not in grid.run_settings(paper, "moons", "glow-gmm", 0)["train"]
    paper["toy"]["train"]["gmm_m_step"] = "gradient"
    assert grid.run_settings(paper, "moons", "glow-gmm", 0)["train"]["gmm_m_step"] == "gradient"
    assert "gmm_m_step" not in grid.run_settings(paper, "moons", "glow-glow", 0)["train"]


def test_toy_head_settings_override_only_their_head() -> None:
    """toy.head_settings.<h> changes mode / clf_weight / train keys of that head's rows only."""
    cfg = load("quick")
    cfg["toy"]["mode"], cfg["toy"]["clf_weight"] = "sgd", 0.0
    cfg["toy"]["head_settings"] = {
        "gmm": {"mode": "em-sgd", "clf_weight": 0.5, "train": {"lr": 3e-3}}
    }
    for f in ("glow", "ffjord"):
        gmm = grid.run_settings(cfg, "moons", f"{f}-gmm", 1)["train"]
        glow = grid.run_settings(cfg, "moons", f"{f}-glow", 1)["train"]
        assert (gmm["mode"], gmm["clf_weight"], gmm["lr"]) == ("em-sgd", 0.5, 3e-3)
        assert (glow["mode"], glow["clf_weight"]) == ("sgd", 0.0)
        assert glow["lr"] == cfg["toy"]["train"]["lr"] != 3e-3
        assert {k: v for k, v in gmm.items() if k not in ("mode", "clf_weight", "lr")} == {
            k: v for k, v in glow.items() if k not in ("mode", "clf_weight", "lr")
        }


def test_run_settings_are_a_valid_run_config(tmp_path: Path) -> None:
    """What run_config writes loads with the CLI's strict run-config reader."""
    run_config = pytest.importorskip("scnf.train.config")
    writer = _load_script("run_config")
    for name in ("paper", "quick", "smoke", "h200", "cpu"):
        cfg = load(name)
        cfg.setdefault("eval", {"batch_size": 512})
        for run in grid.all_runs(cfg)[:: max(1, len(grid.all_runs(cfg)) // 6)]:
            settings = grid.run_settings(cfg, run.dataset, run.variant, run.seed)
            out = tmp_path / name / run.key / "RUN.yaml"
            writer.write_run_config(settings, "split.json", out)
            loaded = run_config.load_run_config(out)
            assert loaded.preset == settings["preset"]
            assert loaded.split == "split.json"


def test_timings_from_benchmarks(tmp_path: Path) -> None:
    report = _load_script("report")
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    paths = []
    for seed, secs in ((0, 10.0), (1, 14.0)):
        p = tmp_path / "benchmarks" / "train" / "mnist" / "glow-sgd-zf49" / f"seed{seed}.tsv"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(header + f"{secs}\t0:00:10\t1\t1\t1\t1\t0\t0\t50\t5\n")
        paths.append(p)
    for rel, secs in (("baseline/m1.tsv", 30.0), ("baseline/m2/seed0.tsv", 7.0)):
        p = tmp_path / "benchmarks" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(header + f"{secs}\t0:00:10\t1\t1\t1\t1\t0\t0\t50\t5\n")
        paths.append(p)
    assert report.timings_from_benchmarks(paths) == {
        "train mnist/glow-sgd-zf49 (2 seeds)": 24.0,
        "baseline m1 (1 seed)": 30.0,
        "baseline m2 (1 seed)": 7.0,
    }


# --- Environments agree with pyproject.toml ---------------------------------------------------

_CONDA_NAME = {"torch": "pytorch"}  # PyPI name -> conda-forge name where they differ
_REQ = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$")


def _requirements(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        match = _REQ.match(spec)
        assert match, spec
        name, version = match.groups()
        out[_CONDA_NAME.get(name.lower(), name.lower())] = version.replace(" ", "")
    return out


def _env_packages(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    assert env["channels"][0] == "conda-forge"
    specs: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            specs += [p for p in dep["pip"] if not p.startswith("-")]
        else:
            specs.append(dep)
    packages = _requirements(specs)
    packages.pop("pip")
    assert packages.pop("python") == ">=3.11"
    return packages


@pytest.mark.parametrize(
    ("env", "extras"),
    [("workflow/envs/scnf.yaml", ("workflow",)), ("environment.yml", ("workflow", "test"))],
)
def test_environment_matches_pyproject(env: str, extras: tuple[str, ...]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in extras:
        specs += project["optional-dependencies"][extra]
    assert _env_packages(ROOT / env) == _requirements(specs)
    assert project["requires-python"] == ">=3.11"


def test_baseline_models_pick_the_per_seed_baselines() -> None:
    """baseline.models trains a subset; the rest is reported as left out, never invented."""
    cfg = load("paper")
    assert grid.baseline_keys(cfg) == [f"baseline/{m}/seed{s}" for m in ("m2", "m1m2")
                                       for s in cfg["seeds"]]  # fmt: skip
    cfg["baseline"]["models"] = ["m1m2"]
    assert grid.baseline_keys(cfg) == [f"baseline/m1m2/seed{s}" for s in cfg["seeds"]]
    assert grid.baseline_models_left_out(cfg) == ["m2"]
    cfg["families"] = ["toy"]
    assert grid.baseline_keys(cfg) == [] and grid.baseline_models_left_out(cfg) == []
    cfg["families"], cfg["baseline"]["models"] = ["baseline"], ["m3"]
    with pytest.raises(ValueError, match="baseline.models"):
        grid.baseline_keys(cfg)


# --- Up to date by the runs' records (workflow/scripts/run_records.py) -------------------------

records = _load_script("run_records")


def test_run_records_skip_the_package_non_protocol_keys() -> None:
    """The DAG-time copy of the keys that never change a result equals the package's."""
    train_config = pytest.importorskip("scnf.train.config")
    assert records.NOT_PROTOCOL_KEYS == train_config.NOT_PROTOCOL_KEYS
    assert records.DATA_LOCATION_KEYS == train_config.DATA_LOCATION_KEYS
    assert records.ADDED_TRAIN_KEYS == train_config.ADDED_TRAIN_KEYS
    defaults = train_config.TrainConfig()
    assert all(getattr(defaults, k) == v for k, v in records.ADDED_TRAIN_KEYS.items())


def test_a_record_without_an_added_key_reads_as_the_value_it_was_trained_with() -> None:
    """A run recorded before train.gmm_m_step existed was trained in closed form: current when
    the config asks for that, changed when it asks for gradient steps."""
    recorded = {"train": {"mode": "em-sgd", "lr": 1e-3}}
    same = {"train": {"mode": "em-sgd", "lr": 1e-3, "gmm_m_step": "closed-form"}}
    assert records.protocol_changes(same, recorded) == []
    other = {"train": {"mode": "em-sgd", "lr": 1e-3, "gmm_m_step": "gradient"}}
    assert records.protocol_changes(other, recorded) == [
        'train.gmm_m_step: "closed-form" -> "gradient"'
    ]
    assert records.protocol_changes({"train": {"estep_every": 5}}, recorded) == [
        "train.estep_every: absent -> 5"
    ]


def test_protocol_changes_name_protocol_keys_only() -> None:
    expected = {
        "name": "new/name", "dataset": "moons", "model": {}, "seed": 0,
        "data": {"dir": "elsewhere", "download": True, "num_train": None},
        "train": {"lr": 1.0e-3, "epochs": 375, "betas": [0.9, 0.999], "progress": False,
                  "checkpoint_every": 500, "compile": True, "clf_weight": 1},
    }  # fmt: skip
    recorded = {
        "name": "old", "dataset": "moons", "model": {}, "seed": 0,
        "data": {"dir": "../shared/data", "download": False, "num_train": None},
        "train": {"lr": 0.001, "epochs": 375, "betas": (0.9, 0.999), "progress": True,
                  "checkpoint_every": 1000, "compile": False, "clf_weight": 1.0,
                  "device": "auto"},  # a default the workflow does not set: not compared
    }  # fmt: skip
    assert records.protocol_changes(expected, recorded) == []
    changed = {**expected, "model": {"flow_steps": 4}, "train": {**expected["train"], "lr": 0.002}}
    assert records.protocol_changes(changed, recorded) == [
        'model: {} -> {"flow_steps": 4}',
        "train.lr: 0.001 -> 0.002",
    ]
    # A dropped model override changes the model too; a key the record lacks is a change.
    assert records.protocol_changes(expected, {**recorded, "model": {"flow_steps": 4}}) == [
        'model: {"flow_steps": 4} -> {}'
    ]
    assert records.protocol_changes({**expected, "split": "s.json"}, recorded) == [
        'split: absent -> "s.json"'
    ]
    assert records.protocol_changes({"train": {"compile": 1}}, {"train": {}}) == []
    assert records.protocol_changes({"x": True}, {"x": 1}) == ["x: 1 -> true"]


def _record(path: Path, config: dict[str, Any], when: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"provenance": {"config": config, "timestamp_utc": when}}))


def test_run_state_reads_the_training_and_evaluation_records(tmp_path: Path) -> None:
    settings = {"dataset": "moons", "train": {"lr": 0.001}}
    run = tmp_path / "run"
    assert records.run_state(run, settings) == records.RunState("absent")
    _record(run / "train_metrics.json", settings, "2026-12-03T07:09:32+00:00")
    state = records.run_state(run, settings)
    assert state.current and not state.evaluated  # trained, not evaluated
    _record(run / "metrics.json", settings, "2026-12-03T07:15:29+00:00")
    state = records.run_state(run, settings)
    assert state.current and state.evaluated
    # Trained again after the evaluation: the evaluation is not current any more.
    _record(run / "train_metrics.json", settings, "2026-12-03T09:00:00+00:00")
    assert not records.run_state(run, settings).evaluated
    changed = records.run_state(run, {"dataset": "moons", "train": {"lr": 0.002}})
    assert changed.changed and changed.changes == ("train.lr: 0.001 -> 0.002",)
    # The baselines train and evaluate in one job: metrics.json is their only record.
    base = tmp_path / "baseline"
    _record(base / "metrics.json", settings, "2026-12-03T07:15:29+00:00")
    (base / "train_metrics.json").write_text(json.dumps({"steps": 10}))
    state = records.run_state(base, settings)
    assert state.current and state.evaluated
    note = tmp_path / "note.txt"
    assert records.write_protocol_note(note, run, changed)
    assert "train.lr: 0.001 -> 0.002" in note.read_text()
    assert records.write_protocol_note(note, run, changed)  # a changed run's: every call
    current = records.run_state(run, settings)
    assert records.write_protocol_note(note, run, current)  # text differs: rewritten
    assert "differs" not in note.read_text()
    assert not records.write_protocol_note(note, run, current)  # same text: left as it is


# The configs with committed runs, and how many at least (paper, quick: the toy runs and the
# baselines; cpu: Table 2's two SGD rows).
@pytest.mark.parametrize(("name", "at_least"), [("paper", 31), ("quick", 31), ("cpu", 6)])
def test_committed_runs_are_current_for_their_config(name: str, at_least: int) -> None:
    """Every committed run recorded the protocol its config gives now (what a fresh clone
    relies on to plan no training for it; tests/test_fresh_clone.py runs the DAG)."""
    cfg = load(name)
    out = ROOT / "results" / cfg["name"]
    checked = []
    for run in grid.all_runs(cfg):
        run_dir = out / "runs" / run.key
        if (run_dir / "metrics.json").is_file():
            split = f"results/{cfg['name']}/splits/{run.dataset}/seed{run.seed}.json"
            expected = {**grid.run_settings(cfg, run.dataset, run.variant, run.seed),
                        "split": split}  # fmt: skip
            checked.append((run.key, records.run_state(run_dir, expected)))
    m1_run = f"results/{cfg['name']}/runs/baseline/m1"
    if (ROOT / m1_run / "metrics.json").is_file():
        checked.append(
            ("baseline/m1", records.run_state(ROOT / m1_run, grid.baseline_settings(cfg, "m1")))
        )
    for key in grid.baseline_keys(cfg):
        model, seed = key.split("/")[1], int(key.rsplit("seed", 1)[1])
        split = f"results/{cfg['name']}/splits/mnist/seed{seed}.json"
        expected = grid.baseline_settings(cfg, model, seed, split,
                                          m1_run if model == "m1m2" else None)  # fmt: skip
        if (out / "runs" / key / "metrics.json").is_file():
            checked.append((key, records.run_state(out / "runs" / key, expected)))
    assert len(checked) >= at_least, checked
    stale = [(key, s) for key, s in checked if not (s.current and s.evaluated)]
    assert not stale, stale
