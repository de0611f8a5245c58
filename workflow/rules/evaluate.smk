# Per-run products of a trained model: test metrics, Fig. 2 reconstructions, toy plots.


rule evaluate:
    input:
        model=os.path.join(RUN_DIR, "model.pt"),
        train_metrics=os.path.join(RUN_DIR, "train_metrics.json"),
    output:
        os.path.join(RUN_DIR, "metrics.json"),
    log:
        os.path.join(LOGS, "evaluate/{dataset}/{variant}/seed{seed}.log"),
    benchmark:
        os.path.join(BENCH, "evaluate/{dataset}/{variant}/seed{seed}.tsv")
    params:
        run_dir=lambda wildcards, input: os.path.dirname(input.model),
        device=config["device"],
    threads: rule_resource("evaluate", "threads")
    resources:
        mem_mb=rule_resource("evaluate", "mem_mb"),
        runtime=rule_resource("evaluate", "runtime"),
        gpu=rule_resource("evaluate", "gpu"),
    conda:
        "../envs/scnf.yaml"
    shell:
        "python -m scnf evaluate --run {params.run_dir} --out {output}"
        " --device {params.device} > {log} 2>&1"


rule reconstruct:
    input:
        model=os.path.join(RUN_DIR, "model.pt"),
        train_metrics=os.path.join(RUN_DIR, "train_metrics.json"),
    output:
        os.path.join(RUN_DIR, "recon.npz"),
    log:
        os.path.join(LOGS, "reconstruct/{dataset}/{variant}/seed{seed}.log"),
    params:
        run_dir=lambda wildcards, input: os.path.dirname(input.model),
        num_images=config["fig2"]["num_images"],
    threads: rule_resource("reconstruct", "threads")
    resources:
        mem_mb=rule_resource("reconstruct", "mem_mb"),
        runtime=rule_resource("reconstruct", "runtime"),
        gpu=rule_resource("reconstruct", "gpu"),
    conda:
        "../envs/scnf.yaml"
    shell:
        "python -m scnf reconstruct --run {params.run_dir} --out {output}"
        " --num-images {params.num_images} > {log} 2>&1"


rule toy_plots:
    input:
        model=os.path.join(RUN_DIR, "model.pt"),
        train_metrics=os.path.join(RUN_DIR, "train_metrics.json"),
    output:
        report(
            res("figures/toy/{dataset}/{variant}/seed{seed}.png"),
            caption="../report/toy_plot.rst",
            category="Appendix D: toy data",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "f-h": "{variant}", "seed": "{seed}"},
        ),
    log:
        os.path.join(LOGS, "toy_plots/{dataset}/{variant}/seed{seed}.log"),
    params:
        run_dir=lambda wildcards, input: os.path.dirname(input.model),
    threads: rule_resource("toy_plots", "threads")
    resources:
        mem_mb=rule_resource("toy_plots", "mem_mb"),
        runtime=rule_resource("toy_plots", "runtime"),
        gpu=rule_resource("toy_plots", "gpu"),
    conda:
        "../envs/scnf.yaml"
    shell:
        "python -m scnf toy-plot --run {params.run_dir} --out {output} > {log} 2>&1"
