rule evaluate:
    input:
        model=model_file("model"),
        val_scores=model_file("val_scores"),
        encoded=ENCODED,
    output:
        **{role: evaluation_file(role) for role in layout.EVALUATION_FILES},
    log:
        f"{RESULTS}/logs/evaluate/{{arch}}/{{loss}}_seed{{seed}}.log",
    conda:
        "../../envs/torch.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=gpu_resources(),
        gpu_model=gpu_model(),
    params:
        outdir=output_folder,
        device=config["training"]["device"],
        gpu_slots=gpu_slot_options,
    shell:
        "benloss evaluate --model {input.model} --val-scores {input.val_scores} --encoded {input.encoded}"
        " --out {params.outdir} --threads {threads} --device {params.device} {params.gpu_slots} > {log} 2>&1"


rule bootstrap:
    input:
        metrics=all_evaluations("metrics"),
        test_scores=all_evaluations("test_scores"),
        runs=all_models("run"),
        encoded=ENCODED,
        class_counts=label_file("counts"),
    output:
        intervals=bootstrap_file("intervals"),
        pairwise=report(
            bootstrap_file("pairwise"),
            caption="../report/pairwise.rst",
            category="3. Results",
            subcategory="Significance",
        ),
        per_class_intervals=report(
            bootstrap_file("per_class_intervals"),
            caption="../report/per_class_intervals.rst",
            category="3. Results",
            subcategory="Per class",
        ),
    log:
        f"{RESULTS}/logs/bootstrap/{{arch}}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        inputs=input_options,
        outdir=output_folder,
        resamples=config["statistics"]["bootstrap"],
        seed=config["statistics"]["seed"],
        block=config["statistics"]["block"],
    shell:
        "benloss bootstrap {params.inputs} --out {params.outdir} --bootstrap {params.resamples}"
        " --seed {params.seed} --block {params.block} > {log} 2>&1"


rule architectures:
    input:
        metrics=every_architecture(all_evaluations, "metrics"),
        test_scores=every_architecture(all_evaluations, "test_scores"),
        runs=every_architecture(all_models, "run"),
        encoded=ENCODED,
    output:
        headline=report(
            comparison_file("headline"),
            caption="../report/architecture_headline.rst",
            category="5. Architectures",
        ),
        ranking=comparison_file("ranking"),
        agreement=report(
            comparison_file("agreement"),
            caption="../report/architecture_agreement.rst",
            category="5. Architectures",
        ),
        figure=report(
            comparison_file("figure"),
            caption="../report/architecture_ranking.rst",
            category="5. Architectures",
        ),
        figure_pdf=comparison_file("figure_pdf"),
    log:
        f"{RESULTS}/logs/architectures.log",
    conda:
        "../../envs/torch.yaml"
    params:
        inputs=input_options,
        outdir=output_folder,
        resamples=config["statistics"]["bootstrap"],
        seed=config["statistics"]["seed"],
        block=config["statistics"]["block"],
    shell:
        "benloss architectures {params.inputs} --out {params.outdir} --bootstrap {params.resamples}"
        " --seed {params.seed} --block {params.block} > {log} 2>&1"
