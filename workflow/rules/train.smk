# One training run per (dataset, variant, seed): RUN.yaml from the config, then `scnf train`.


rule run_config:
    input:
        split=res("splits/{dataset}/seed{seed}.json"),
    output:
        os.path.join(RUN_DIR, "RUN.yaml"),
    log:
        os.path.join(LOGS, "run_config/{dataset}/{variant}/seed{seed}.log"),
    params:
        # Every hyper-parameter of the run: Snakemake reruns the job (and so the training)
        # when any of them changes.
        settings=run_settings,
    threads: rule_resource("run_config", "threads")
    resources:
        mem_mb=rule_resource("run_config", "mem_mb"),
        runtime=rule_resource("run_config", "runtime"),
        gpu=rule_resource("run_config", "gpu"),
    conda:
        "../envs/scnf.yaml"
    script:
        "../scripts/run_config.py"


rule train:
    input:
        config=os.path.join(RUN_DIR, "RUN.yaml"),
        split=res("splits/{dataset}/seed{seed}.json"),
    output:
        # train_metrics.json is written last: its existence means the run completed.
        # checkpoint.pt and train_log.jsonl are left undeclared on purpose: Snakemake keeps
        # them when a job fails or times out, and the rerun resumes from the checkpoint.
        model=os.path.join(RUN_DIR, "model.pt"),
        metrics=os.path.join(RUN_DIR, "train_metrics.json"),
    log:
        os.path.join(LOGS, "train/{dataset}/{variant}/seed{seed}.log"),
    benchmark:
        os.path.join(BENCH, "train/{dataset}/{variant}/seed{seed}.tsv")
    params:
        run_dir=lambda wildcards, output: os.path.dirname(output.metrics),
        device=config["device"],
    threads: rule_resource("train", "threads")
    resources:
        mem_mb=rule_resource("train", "mem_mb"),
        runtime=rule_resource("train", "runtime"),
        gpu=rule_resource("train", "gpu"),
    conda:
        "../envs/scnf.yaml"
    shell:
        "python -m scnf train --config {input.config} --out {params.run_dir}"
        " --device {params.device} > {log} 2>&1"
