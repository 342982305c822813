rule synth:
    output:
        archive=f"{RESULTS}/demo_archive/BigEarthNet-demo.tar.gz",
        masks=f"{RESULTS}/demo_archive/masks.npz",
        statistics=f"{RESULTS}/demo_archive/band_statistics.csv",
        lists=[f"{RESULTS}/demo_archive/lists/{f}" for f in DEMO_LIST_FILES.values()],
    log:
        f"{RESULTS}/logs/synth.log",
    conda:
        "../../envs/data.yaml"
    params:
        outdir=output_folder,
        patches=config["data"]["demo"]["patches"],
        seed=config["data"]["demo"]["seed"],
    shell:
        "benloss synth --out {params.outdir} --patches {params.patches} --seed {params.seed} > {log} 2>&1"


rule download:
    output:
        config["data"]["download"]["path"],
    log:
        f"{RESULTS}/logs/download.log",
    conda:
        "../../envs/data.yaml"
    params:
        url=config["data"]["download"]["url"],
        md5=config["data"]["download"]["md5"],
        retries=config["data"]["download"]["retries"],
    shell:
        "benloss download --url {params.url} --md5 {params.md5} --retries {params.retries}"
        " --out {output} > {log} 2>&1"


rule labels:
    input:
        **list_paths(),
        archive=archive_path(),
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
    conda:
        "../../envs/data.yaml"
    params:
        lists=list_arguments,
        outdir=output_folder,
    shell:
        "benloss labels --archive {input.archive} {params.lists} --out {params.outdir} > {log} 2>&1"


rule encode:
    input:
        archive=archive_path(),
        table=f"{RESULTS}/labels/patches.parquet",
        statistics=band_statistics_path(),
    output:
        directory(f"{RESULTS}/encoded"),
    log:
        f"{RESULTS}/logs/encode.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "benloss encode --archive {input.archive} --labels {input.table}"
        " --band-statistics {input.statistics} --out {output} > {log} 2>&1"
