# Presentation: gather every run's metrics.json into runs.csv (one row per run) and that into the
# paper's tables, training logs into curves, reconstructions into Fig. 2, everything into
# REPORT.md. The table / figure / report code lives in scnf.report (tested there).


rule runs:
    input:
        all_metrics,
    output:
        runs=report(
            res("runs.csv"),
            caption="../report/runs.rst",
            category="Runs",
        ),
        curves=res("curves.csv"),
    log:
        os.path.join(LOGS, "runs.log"),
    threads: rule_resource("table", "threads")
    resources:
        **job_resources("table"),
    conda:
        "../envs/scnf.yaml"
    script:
        "../scripts/runs.py"


rule toy_limits:
    output:
        res("toy_limits.json"),
    log:
        os.path.join(LOGS, "toy_limits.log"),
    threads: rule_resource("table", "threads")
    resources:
        **job_resources("table"),
    conda:
        "../envs/scnf.yaml"
    shell:
        "python -m scnf --threads {threads} toy-limits --out {output} > {log} 2>&1"


rule table:
    input:
        runs=res("runs.csv"),
        # Table 1 shows the toy data's own limits (entropy, Bayes error) beside the paper.
        limits=lambda w: [res("toy_limits.json")] if w.table == "table1" else [],
    output:
        csv=report(
            res("tables/{table}.csv"),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        md=res("tables/{table}.md"),
    log:
        os.path.join(LOGS, "table/{table}.log"),
    params:
        protocol=config["protocol"],
        config_name=config["name"],
    threads: rule_resource("table", "threads")
    resources:
        **job_resources("table"),
    conda:
        "../envs/scnf.yaml"
    script:
        "../scripts/table.py"


rule curves:
    input:
        table_metrics,
    output:
        report(
            res("figures/curves/{table}.png"),
            caption="../report/curves.rst",
            category="Training curves",
            labels={"table": "{table}"},
        ),
    log:
        os.path.join(LOGS, "curves/{table}.log"),
    threads: rule_resource("table", "threads")
    resources:
        **job_resources("table"),
    conda:
        "../envs/scnf.yaml"
    script:
        "../scripts/curves.py"


rule fig2:
    input:
        fig2_inputs,
    output:
        report(
            res("figures/fig2.png"),
            caption="../report/fig2.rst",
            category="Figures",
            labels={"figure": "Fig. 2"},
        ),
    log:
        os.path.join(LOGS, "fig2.log"),
    params:
        max_images=config["fig2"]["num_images"],
    threads: rule_resource("fig2", "threads")
    resources:
        **job_resources("fig2"),
    conda:
        "../envs/scnf.yaml"
    script:
        "../scripts/fig2.py"


rule claims:
    input:
        runs=res("runs.csv"),
        # Fig. 2's arrays (one per z_f, first seed): the reconstruction claim's samples.
        recon=fig2_inputs,
    output:
        res("claims.md"),
    log:
        os.path.join(LOGS, "claims.log"),
    params:
        protocol=config["protocol"],
        config_name=config["name"],
    threads: rule_resource("table", "threads")
    resources:
        **job_resources("table"),
    conda:
        "../envs/scnf.yaml"
    script:
        "../scripts/claims.py"


rule report:
    input:
        tables=expand(res("tables/{table}.md"), table=grid.TABLE_IDS),
        claims=res("claims.md"),
        runs=res("runs.csv"),
        curves=expand(res("figures/curves/{table}.png"), table=grid.TABLE_IDS),
        fig2=fig2_outputs,
        toy_plots=toy_plot_inputs,
        train_benchmarks=benchmarks("train"),
        evaluate_benchmarks=benchmarks("evaluate"),
        baseline_benchmarks=baseline_benchmarks,
    output:
        res("REPORT.md"),
    log:
        os.path.join(LOGS, "report.log"),
    params:
        config_name=config["name"],
        protocol=config["protocol"],
        families=grid.families(config),
        baselines_left_out=grid.baseline_models_left_out(config),
        table_ids=grid.TABLE_IDS,
        toy_captions=toy_plot_captions,
        # The workflow config as validated (defaults filled in), recorded as provenance.
        config=config,
    threads: rule_resource("report", "threads")
    resources:
        **job_resources("report"),
    conda:
        "../envs/scnf.yaml"
    script:
        "../scripts/report.py"
