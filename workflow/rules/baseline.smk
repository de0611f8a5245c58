# The measured baseline of Table 2: Kingma et al. (2014). M1 (a VAE, no labels) once per config;
# M2 (raw pixels) and M1+M2 (M2 on M1's latent) once per seed, on the SCNF runs' label splits.
# Each job writes its run config (JSON, from the config's `baseline:` section through
# experiment_grid.baseline_settings; a params value) into its run directory and calls the CLI;
# a run whose metrics.json records another protocol is trained again (common.smk,
# run_records.py). checkpoint.pt stays undeclared, as in train.smk: a rerun after a failure or
# timeout resumes from it.

import json


rule baseline_m1:
    input:
        unpack(baseline_inputs("m1")),
    output:
        model=os.path.join(BASELINE_DIR, "m1", "model.pt"),
        metrics=os.path.join(BASELINE_DIR, "m1", "metrics.json"),
    log:
        os.path.join(LOGS, "baseline/m1.log"),
    benchmark:
        os.path.join(BENCH, "baseline/m1.tsv")
    params:
        settings=lambda wildcards: json.dumps(grid.baseline_settings(config, "m1")),
        run_dir=lambda wildcards, output: os.path.dirname(output.metrics),
    threads: rule_resource("baseline_m1", "threads")
    resources:
        **job_resources("baseline_m1"),
    conda:
        "../envs/scnf.yaml"
    shell:
        "mkdir -p {params.run_dir} && printf '%s\\n' {params.settings:q}"
        " > {params.run_dir}/BASELINE.json && python -m scnf --threads {threads} baseline-m1"
        " --config {params.run_dir}/BASELINE.json --out {params.run_dir} --no-progress"
        " > {log} 2>&1"


rule baseline_m2:
    input:
        unpack(baseline_inputs("m2")),
    output:
        os.path.join(BASELINE_DIR, "m2", "seed{seed}", "metrics.json"),
    log:
        os.path.join(LOGS, "baseline/m2/seed{seed}.log"),
    benchmark:
        os.path.join(BENCH, "baseline/m2/seed{seed}.tsv")
    params:
        settings=lambda wildcards, input: json.dumps(
            grid.baseline_settings(config, "m2", int(wildcards.seed), input.split)
        ),
        run_dir=lambda wildcards, output: os.path.dirname(output[0]),
    threads: rule_resource("baseline_m2", "threads")
    resources:
        **job_resources("baseline_m2"),
    conda:
        "../envs/scnf.yaml"
    shell:
        "mkdir -p {params.run_dir} && printf '%s\\n' {params.settings:q}"
        " > {params.run_dir}/BASELINE.json && python -m scnf --threads {threads} baseline-m2"
        " --config {params.run_dir}/BASELINE.json --out {params.run_dir} --no-progress"
        " > {log} 2>&1"


rule baseline_m1m2:
    input:
        unpack(baseline_inputs("m1m2")),
    output:
        os.path.join(BASELINE_DIR, "m1m2", "seed{seed}", "metrics.json"),
    log:
        os.path.join(LOGS, "baseline/m1m2/seed{seed}.log"),
    benchmark:
        os.path.join(BENCH, "baseline/m1m2/seed{seed}.tsv")
    params:
        settings=lambda wildcards, input: json.dumps(
            grid.baseline_settings(
                config, "m1m2", int(wildcards.seed), input.split, os.path.dirname(input.m1)
            )
        ),
        run_dir=lambda wildcards, output: os.path.dirname(output[0]),
    threads: rule_resource("baseline_m1m2", "threads")
    resources:
        **job_resources("baseline_m1m2"),
    conda:
        "../envs/scnf.yaml"
    shell:
        "mkdir -p {params.run_dir} && printf '%s\\n' {params.settings:q}"
        " > {params.run_dir}/BASELINE.json && python -m scnf --threads {threads} baseline-m2"
        " --config {params.run_dir}/BASELINE.json --out {params.run_dir} --no-progress"
        " > {log} 2>&1"
