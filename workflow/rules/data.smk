rule synth:
    output:
        archive=f"{RESULTS}/demo_archive/BigEarthNet-demo.tar.gz",
        masks=f"{RESULTS}/demo_archive/masks.npz",
        statistics=f"{RESULTS}/demo_archive/band_statistics.csv",
        lists=[f"{RESULTS}/demo_archive/lists/{f}" for f in DEMO_LIST_FILES.values()],
    log:
        f"{RESULTS}/logs/synth.log",
    params:
        outdir=f"{RESULTS}/demo_archive",
        patches=config["data"]["demo"]["patches"],
        seed=config["data"]["demo"]["seed"],
    conda:
        "../../envs/data.yaml"
    shell:
        "{BENLOSS} synth --out {params.outdir} --patches {params.patches} --seed {params.seed} > {log} 2>&1"


rule download:
    output:
        config["data"]["download"]["path"],
    log:
        f"{RESULTS}/logs/download.log",
    params:
        url=config["data"]["download"]["url"],
        md5=config["data"]["download"]["md5"],
        retries=config["data"]["download"]["retries"],
    conda:
        "../../envs/data.yaml"
    shell:
        "{BENLOSS} download --url {params.url} --md5 {params.md5} --retries {params.retries}"
        " --out {output} > {log} 2>&1"


rule labels:
    input:
        archive=archive_path(),
        **list_paths(),
    output:
        table=f"{RESULTS}/labels/patches.parquet",
        counts=report(
            f"{RESULTS}/labels/class_counts.csv",
            caption="../report/class_counts.rst",
            category="1. Data",
        ),
        summary=f"{RESULTS}/labels/summary.json",
    log:
        f"{RESULTS}/logs/labels.log",
    params:
        lists=list_arguments,
        outdir=f"{RESULTS}/labels",
    conda:
        "../../envs/data.yaml"
    shell:
        "{BENLOSS} labels --archive {input.archive} {params.lists} --out {params.outdir} > {log} 2>&1"


rule encode:
    input:
        archive=archive_path(),
        table=f"{RESULTS}/labels/patches.parquet",
        statistics=band_statistics_path(),
    output:
        directory(f"{RESULTS}/encoded"),
    log:
        f"{RESULTS}/logs/encode.log",
    threads: workflow.cores
    conda:
        "../../envs/data.yaml"
    shell:
        "{BENLOSS} encode --archive {input.archive} --labels {input.table}"
        " --band-statistics {input.statistics} --out {output} --threads {threads} > {log} 2>&1"
