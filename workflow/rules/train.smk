rule train:
    input:
        encoded=ENCODED,
        counts=label_file("counts"),
    output:
        **{role: model_file(role) for role in layout.MODEL_FILES},
        snapshots=snapshot_outputs(),
    log:
        f"{RESULTS}/logs/train/{{arch}}/{{loss}}_seed{{seed}}.log",
    # the critical path: every study-wide step waits for all models, while per-model steps can run beside them
    priority: 1
    retries: config["training"]["retries"]
    conda:
        "../../envs/torch.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=gpu_resources(),
        mem_mb=architecture_resource("mem_mb"),
        runtime=architecture_resource("runtime"),
        gpu_model=gpu_model(),
    params:
        outdir=output_folder,
        training=training_settings(),
        model=model_settings,
        loss_params=loss_params,
        gpu_slots=gpu_slot_options,
        snapshots=LANDSCAPE["snapshots"],
    shell:
        "benloss train --encoded {input.encoded} --class-counts {input.counts} --out {params.outdir}"
        " --architecture {wildcards.arch} --loss {wildcards.loss} --seed {wildcards.seed}"
        " --training {params.training} --model {params.model} --loss-params {params.loss_params}"
        " --snapshots {params.snapshots} {params.gpu_slots} > {log} 2>&1"
