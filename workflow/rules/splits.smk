# Label splits: which training objects are labelled (toy: 5 per class of 1000; MNIST: 10 per
# class of 60,000). One file per dataset and seed, shared by every run with that seed.


rule splits:
    output:
        res("splits/{dataset}/seed{seed}.json"),
    log:
        os.path.join(LOGS, "splits/{dataset}/seed{seed}.log"),
    params:
        data_dir=config["data_dir"],
        download="--download" if config["download"] else "",
    threads: rule_resource("splits", "threads")
    resources:
        **job_resources("splits"),
    conda:
        "../envs/scnf.yaml"
    # The first step that reads MNIST: SCNF_DATA_HINT=workflow makes a data error name the
    # workflow's settings (data_dir, --config download=true), not a run config's data.dir.
    shell:
        "SCNF_DATA_HINT=workflow python -m scnf --threads {threads} splits"
        " --dataset {wildcards.dataset} --seed {wildcards.seed}"
        " --out {output} --data-dir {params.data_dir} {params.download} > {log} 2>&1"
