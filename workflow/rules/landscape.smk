rule landscape:
    input:
        model=model_file("model"),
        snapshots=snapshot_outputs(),
        encoded=ENCODED,
        counts=label_file("counts"),
    output:
        **{role: landscape_file(role) for role in layout.LANDSCAPE_FILES},
    log:
        f"{RESULTS}/logs/landscape/{{arch}}/{{loss}}_seed{{seed}}.log",
    conda:
        "../../envs/torch.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=gpu_resources(),
        gpu_model=gpu_model(),
        mem_mb=architecture_resource("mem_mb"),
        runtime=architecture_resource("runtime"),
    params:
        outdir=output_folder,
        settings=" ".join(
            f"--{key} {LANDSCAPE[key]}"
            for key in ("grid", "span", "images", "seed", "radius", "iterations")
        ),
        device=config["training"]["device"],
        gpu_slots=gpu_slot_options,
    shell:
        "benloss landscape --model {input.model} --snapshots {input.snapshots} --encoded {input.encoded}"
        " --class-counts {input.counts} --out {params.outdir} {params.settings} --threads {threads}"
        " --device {params.device} {params.gpu_slots} > {log} 2>&1"


rule landscapes:
    input:
        arrays=[
            landscape_file("arrays", "{arch}", loss, seed)
            for loss in LOSSES
            for seed in SEEDS
        ],
        summaries=[
            landscape_file("summary", "{arch}", loss, seed)
            for loss in LOSSES
            for seed in SEEDS
        ],
    output:
        figure=report(
            landscape_summary_file("figure"),
            caption="../report/landscapes.rst",
            category="6. Landscapes",
        ),
        figure_pdf=landscape_summary_file("figure_pdf"),
        slices=report(
            landscape_summary_file("slices"),
            caption="../report/landscape_slices.rst",
            category="6. Landscapes",
        ),
        table=landscape_summary_file("table"),
    log:
        f"{RESULTS}/logs/landscapes/{{arch}}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        folder=lambda wildcards: architecture_folder(wildcards.arch),
    shell:
        "benloss landscapes --arrays {input.arrays} --summaries {input.summaries} --out {params.folder}"
        " > {log} 2>&1"
