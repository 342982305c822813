from snakemake.utils import min_version

min_version("9.27")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/landscape.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    run_config,
    tables,
    figures,
    report,


rule all:
    input:
        all_outputs(),
