# Per-run products of a trained model: test metrics, Fig. 2 reconstructions, toy plots.
# Evaluation is one rule per family, as training is (see train.smk): evaluate_mnist may ask for
# a GPU, and a cluster profile routes it by its rule name.


rule evaluate_toy:
    input:
        unpack(trained_inputs),
    output:
        os.path.join(RUN_DIR, "metrics.json"),
    log:
        os.path.join(LOGS, "evaluate/{dataset}/{variant}/seed{seed}.log"),
    # One benchmark folder for both families: the report's timings read benchmarks/evaluate/.
    benchmark:
        os.path.join(BENCH, "evaluate/{dataset}/{variant}/seed{seed}.tsv")
    wildcard_constraints:
        dataset=TOY_DATASETS,
    params:
        run_dir=lambda wildcards, input: os.path.dirname(input.model),
        device=config["device"],
    threads: rule_resource("evaluate", "threads", "toy")
    resources:
        **job_resources("evaluate", "toy"),
    conda:
        "../envs/scnf.yaml"
    shell:
        "python -m scnf --threads {threads} evaluate --run {params.run_dir} --out {output}"
        " --device {params.device} > {log} 2>&1"


use rule evaluate_toy as evaluate_mnist with:
    wildcard_constraints:
        dataset=MNIST_DATASETS,
    threads: rule_resource("evaluate", "threads", "mnist")
    resources:
        **job_resources("evaluate", "mnist"),


rule reconstruct:
    input:
        unpack(trained_inputs),
    output:
        os.path.join(RUN_DIR, "recon.npz"),
    log:
        os.path.join(LOGS, "reconstruct/{dataset}/{variant}/seed{seed}.log"),
    params:
        run_dir=lambda wildcards, input: os.path.dirname(input.model),
        num_images=config["fig2"]["num_images"],
        device=config["device"],
    threads: rule_resource("reconstruct", "threads")
    resources:
        **job_resources("reconstruct"),
    conda:
        "../envs/scnf.yaml"
    shell:
        "python -m scnf --threads {threads} reconstruct --run {params.run_dir} --out {output}"
        " --num-images {params.num_images} --device {params.device} > {log} 2>&1"


rule toy_plots:
    input:
        unpack(trained_inputs),
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
        **job_resources("toy_plots"),
    conda:
        "../envs/scnf.yaml"
    shell:
        "python -m scnf --threads {threads} toy-plot --run {params.run_dir} --out {output} > {log} 2>&1"
