rule train:
    input:
        encoded=f"{RESULTS}/encoded",
        counts=f"{RESULTS}/labels/class_counts.csv",
    output:
        model=f"{model_dir()}/model.pt",
        history=f"{model_dir()}/history.csv",
        val_scores=f"{model_dir()}/val_scores.npy",
        baseline=f"{model_dir()}/baseline.json",
        info=f"{model_dir()}/run.json",
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
        width=config["model"]["width"],
        epochs=config["training"]["epochs"],
        batch_size=config["training"]["batch_size"],
        lr=config["training"]["lr"],
        weight_decay=config["training"]["weight_decay"],
        device=config["training"]["device"],
        workers=config["training"]["workers"],
        loss_params=loss_params,
        flags=train_flags,
        gpu_slots=gpu_slot_options(),
    shell:
        "benloss train --encoded {input.encoded} --class-counts {input.counts} --out {params.outdir}"
        " --loss {wildcards.loss} --seed {wildcards.seed} --width {params.width} --epochs {params.epochs}"
        " --batch-size {params.batch_size} --lr {params.lr}"
        " --weight-decay {params.weight_decay} --loss-params {params.loss_params}"
        " --device {params.device} --threads {threads} --workers {params.workers} {params.flags} {params.gpu_slots} > {log} 2>&1"
