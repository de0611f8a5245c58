# One training run per (dataset, variant, seed): RUN.yaml from the config, then `scnf train`.
# Training is one rule per family, train_toy (CPU) and train_mnist (the one that may ask for a
# GPU), so that a cluster profile can send them to different partitions by rule name; they share
# one definition and differ only in which datasets they match and in their resources.

import json
import shlex

RUN_CONFIG_SCRIPT = os.path.join(workflow.basedir, "workflow", "scripts", "run_config.py")


rule run_config:
    input:
        unpack(run_config_inputs),
    output:
        os.path.join(RUN_DIR, "RUN.yaml"),
    log:
        os.path.join(LOGS, "run_config/{dataset}/{variant}/seed{seed}.log"),
    params:
        # Every hyper-parameter of the run, as JSON (a params value: Snakemake reruns the job
        # when one changes; training reruns when the run's recorded protocol differs, see
        # run_records.py).
        settings=lambda wildcards: json.dumps(run_settings(wildcards)),
    threads: rule_resource("run_config", "threads")
    resources:
        **job_resources("run_config"),
    conda:
        "../envs/scnf.yaml"
    # A shell command, not a `script:` rule: a script newer than RUN.yaml (as after any git
    # checkout) would replan every run_config job of a committed config. The script's path is
    # part of the command, not a params value: workflow.source_path() names a per-invocation
    # cache copy, which as a param would make every run_config job look changed on every call.
    shell:
        f"python {shlex.quote(RUN_CONFIG_SCRIPT)} --settings {{params.settings:q}}"
        " --split {input.split} --out {output} > {log} 2>&1"


rule train_toy:
    input:
        unpack(train_inputs),
    output:
        # train_metrics.json is written last: its existence means the run completed. Test
        # metrics come from the evaluate rule (--no-final-eval: the test set is scored once).
        # checkpoint.pt and train_log.jsonl are left undeclared on purpose: Snakemake keeps
        # them when a job fails or times out, and the rerun resumes from the checkpoint.
        model=os.path.join(RUN_DIR, "model.pt"),
        metrics=os.path.join(RUN_DIR, "train_metrics.json"),
    log:
        os.path.join(LOGS, "train/{dataset}/{variant}/seed{seed}.log"),
    # One benchmark folder for both families: the report's timings read benchmarks/train/.
    benchmark:
        os.path.join(BENCH, "train/{dataset}/{variant}/seed{seed}.tsv")
    wildcard_constraints:
        dataset=TOY_DATASETS,
    params:
        run_dir=lambda wildcards, output: os.path.dirname(output.metrics),
        device=config["device"],
    threads: rule_resource("train", "threads", "toy")
    resources:
        **job_resources("train", "toy"),
    conda:
        "../envs/scnf.yaml"
    shell:
        "python -m scnf --threads {threads} train --config {input.config} --out {params.run_dir}"
        " --device {params.device} --no-final-eval > {log} 2>&1"


use rule train_toy as train_mnist with:
    wildcard_constraints:
        dataset=MNIST_DATASETS,
    threads: rule_resource("train", "threads", "mnist")
    resources:
        **job_resources("train", "mnist"),
