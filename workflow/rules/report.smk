rule tables:
    input:
        **({"landscape": landscape_summary_file("table")} if LANDSCAPES else {}),
        metrics=all_evaluations("metrics"),
        per_class=all_evaluations("per_class"),
        histories=all_models("history"),
        class_counts=label_file("counts"),
        intervals=bootstrap_file("intervals"),
    output:
        table1=report(
            table_file("table1"),
            caption="../report/table1.rst",
            category="3. Results",
            subcategory="Table 1",
        ),
        table1_md=table_file("table1_md"),
        table1_tex=table_file("table1_tex"),
        table1_paper=table_file("table1_paper"),
        table2=report(
            table_file("table2"),
            caption="../report/table2.rst",
            category="3. Results",
            subcategory="Table 2",
        ),
        table2_md=table_file("table2_md"),
        per_class=report(
            table_file("per_class"),
            caption="../report/per_class.rst",
            category="3. Results",
            subcategory="Per class",
        ),
        per_class_ap=report(
            table_file("per_class_ap"),
            caption="../report/per_class_ap.rst",
            category="3. Results",
            subcategory="Per class",
        ),
        probability=report(
            table_file("probability"),
            caption="../report/probability.rst",
            category="3. Results",
            subcategory="Probabilities",
        ),
    log:
        f"{RESULTS}/logs/tables/{{arch}}.log",
    conda:
        "../../envs/report.yaml"
    params:
        inputs=input_options,
        outdir=output_folder,
        demo="--demo" if DEMO else "",
    shell:
        "benloss tables {params.inputs} --out {params.outdir} {params.demo} > {log} 2>&1"


rule figures:
    input:
        histories=all_models("history"),
        class_counts=label_file("counts"),
        pairwise=bootstrap_file("pairwise"),
        pr_curves=all_evaluations("pr_curve"),
        reliability=all_evaluations("reliability"),
    output:
        curves=report(
            figure_file("curves"),
            caption="../report/f1_curves.rst",
            category="2. Training",
        ),
        curves_pdf=figure_file("curves_pdf"),
        time_curves=report(
            figure_file("time_curves"),
            caption="../report/f1_time.rst",
            category="2. Training",
        ),
        pairwise=report(
            figure_file("pairwise"),
            caption="../report/pairwise_f1.rst",
            category="3. Results",
            subcategory="Significance",
        ),
        counts=report(
            figure_file("counts"),
            caption="../report/class_counts.rst",
            category="1. Data",
        ),
        pr_curves=report(
            figure_file("pr_curves"),
            caption="../report/pr_curves.rst",
            category="3. Results",
            subcategory="Threshold-free",
        ),
        reliability=report(
            figure_file("reliability"),
            caption="../report/reliability.rst",
            category="3. Results",
            subcategory="Probabilities",
        ),
    log:
        f"{RESULTS}/logs/figures/{{arch}}.log",
    conda:
        "../../envs/report.yaml"
    params:
        inputs=input_options,
        outdir=output_folder,
    shell:
        "benloss figures {params.inputs} --out {params.outdir} > {log} 2>&1"


rule run_config:
    output:
        f"{RESULTS}/{layout.RUN_CONFIG}",
    log:
        f"{RESULTS}/logs/run_config.log",
    conda:
        "../../envs/report.yaml"
    params:
        text=yaml.safe_dump(config, sort_keys=False),
    shell:
        "printf '%s' {params.text:q} > {output} && echo 'configuration written to {output}' > {log}"


rule report:
    input:
        **report_inputs(),
    output:
        f"{RESULTS}/{layout.REPORT}",
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        "../../envs/report.yaml"
    params:
        inputs=input_options,
    shell:
        "benloss report {params.inputs} --out {output} > {log} 2>&1"
