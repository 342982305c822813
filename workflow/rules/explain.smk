rule explain:
    input:
        # Fig. 1 and the reference-map scores explain each loss's lowest-seed model.
        models=all_models("model", seeds=[min(SEEDS)]),
        encoded=ENCODED,
    output:
        figure=report(
            explanation_file("figure"),
            caption="../report/lrp_heatmaps.rst",
            category="4. Explanations",
        ),
        figure_pdf=explanation_file("figure_pdf"),
        relevance=explanation_file("relevance"),
        scores=report(
            explanation_file("scores"),
            caption="../report/lrp_scores.rst",
            category="4. Explanations",
        ),
        examples=explanation_file("examples"),
        chart=report(
            explanation_file("chart"),
            caption="../report/lrp_scores_chart.rst",
            category="4. Explanations",
        ),
        chart_pdf=explanation_file("chart_pdf"),
        conservation=explanation_file("conservation"),
        bounds=explanation_file("bounds"),
    log:
        f"{RESULTS}/logs/explain/{{arch}}.log",
    # starts as soon as the last model is trained, beside the per-model steps, rather than after them
    priority: 1
    conda:
        "../../envs/torch.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=gpu_resources(),
        gpu_model=gpu_model(),
    params:
        inputs=input_options,
        run=run_folder,
        examples=explain_examples(),
        per_class=config["explain"]["per_class"],
        seed=config["explain"]["seed"],
        device=config["training"]["device"],
        gpu_slots=gpu_slot_options,
    shell:
        "benloss explain {params.inputs} --examples {params.examples} --per-class {params.per_class}"
        " --seed {params.seed} --out {params.run} --threads {threads} --device {params.device}"
        " {params.gpu_slots} > {log} 2>&1"
