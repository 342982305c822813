rule train:
    input:
        encoded=ENCODED,
        counts=label_file("counts"),
    output:
        **{role: model_file(role) for role in layout.MODEL_FILES},
    log:
        f"{RESULTS}/logs/train/{{loss}}_seed{{seed}}.log",
    retries: config["training"]["retries"]
    conda:
        "../../envs/torch.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=gpu_resources(),
        mem_mb=config["training"]["mem_mb"],
        runtime=config["training"]["runtime"],
        gpu_model=gpu_model(),
    params:
        outdir=output_folder,
        training=training_settings(),
        model=as_json(config["model"]),
        loss_params=loss_params,
        gpu_slots=gpu_slot_options(),
    shell:
        "benloss train --encoded {input.encoded} --class-counts {input.counts} --out {params.outdir}"
        " --loss {wildcards.loss} --seed {wildcards.seed} --training {params.training} --model {params.model}"
        " --loss-params {params.loss_params} {params.gpu_slots} > {log} 2>&1"
