rule synth:
    output:
        **demo_outputs(),
    log:
        f"{RESULTS}/logs/synth.log",
    conda:
        "../../envs/data.yaml"
    params:
        outdir=output_folder,
        patches=config["data"]["demo"]["patches"],
        seed=config["data"]["demo"]["seed"],
        format=config["data"]["demo"]["format"],
    shell:
        "benloss synth --out {params.outdir} --patches {params.patches} --seed {params.seed}"
        " --format {params.format} > {log} 2>&1"


rule download:
    output:
        "{download}",
    log:
        f"{RESULTS}/logs/download/{{download}}.log",
    wildcard_constraints:
        download="|".join(re.escape(path) for path in DOWNLOADS) or "(?!)",
    conda:
        "../../envs/data.yaml"
    params:
        url=lambda wildcards: DOWNLOADS[wildcards.download]["url"],
        md5=lambda wildcards: DOWNLOADS[wildcards.download]["md5"],
        retries=lambda wildcards: DOWNLOADS[wildcards.download]["retries"],
    shell:
        "benloss download --url '{params.url}' --md5 {params.md5} --retries {params.retries}"
        " --out {output} > {log} 2>&1"


rule prepare:
    input:
        unpack(prepare_inputs),
    output:
        **subset_lists(),
        table=label_file("table"),
        counts=report(
            label_file("counts"),
            caption="../report/class_counts.rst",
            category="1. Data",
        ),
        summary=label_file("summary"),
        encoded=directory(ENCODED),
    log:
        f"{RESULTS}/logs/prepare.log",
    conda:
        "../../envs/data.yaml"
    threads: 2  # gzip decoding runs in a thread of its own
    params:
        source=source_arguments,
        selection=selection_arguments(),
        labels=output_folder,
    shell:
        "benloss prepare {params.source} {params.selection} --labels-out {params.labels} --out {output.encoded}"
        " > {log} 2>&1"
