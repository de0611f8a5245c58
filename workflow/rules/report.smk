# Presentation: gather metrics.json into the paper's tables, reconstructions into Fig. 2, and
# everything into REPORT.md. The table / figure / report code lives in scnf.report (tested there).


rule table:
    input:
        table_metrics,
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
    threads: rule_resource("table", "threads")
    resources:
        **job_resources("table"),
    conda:
        "../envs/scnf.yaml"
    script:
        "../scripts/table.py"


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


rule report:
    input:
        tables=expand(res("tables/{table}.md"), table=grid.TABLE_IDS),
        fig2=res("figures/fig2.png"),
        toy_plots=toy_plot_inputs,
        train_benchmarks=benchmarks("train"),
        evaluate_benchmarks=benchmarks("evaluate"),
    output:
        res("REPORT.md"),
    log:
        os.path.join(LOGS, "report.log"),
    params:
        config_name=config["name"],
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
