rule run_config:
    output:
        f"{RESULTS}/config.yaml",
    log:
        f"{RESULTS}/logs/run_config.log",
    conda:
        "../../envs/report.yaml"
    params:
        text=yaml.safe_dump(config, sort_keys=False),
    run:
        with open(output[0], "w") as handle:
            handle.write(params.text)


rule report:
    input:
        config=f"{RESULTS}/config.yaml",
        statistics=rules.statistics.output,
        tables=rules.tables.output,
        figures=rules.figures.output,
        explain=rules.explain.output,
        summary=f"{RESULTS}/labels/summary.json",
        encoded=f"{RESULTS}/encoded",
        baselines=all_models("baseline.json"),
    output:
        f"{RESULTS}/report.html",
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        "../../envs/report.yaml"
    params:
        results=run_folder,
    shell:
        "benloss report --results {params.results} --config {input.config} --out {output} > {log} 2>&1"
