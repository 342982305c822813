rule explain:
    input:
        models=all_models("model.pt"),
        encoded=f"{RESULTS}/encoded",
    output:
        figure=report(
            f"{RESULTS}/figures/lrp_heatmaps.png",
            caption="../report/lrp_heatmaps.rst",
            category="4. Explanations",
        ),
        figure_pdf=f"{RESULTS}/figures/lrp_heatmaps.pdf",
        relevance=f"{RESULTS}/explain/relevance.npz",
        scores=report(
            f"{RESULTS}/tables/lrp_scores.csv",
            caption="../report/lrp_scores.rst",
            category="4. Explanations",
        ),
        examples=f"{RESULTS}/explain/lrp_examples.csv",
        chart=report(
            f"{RESULTS}/figures/lrp_scores.png",
            caption="../report/lrp_scores_chart.rst",
            category="4. Explanations",
        ),
        chart_pdf=f"{RESULTS}/figures/lrp_scores.pdf",
        conservation=f"{RESULTS}/explain/conservation.csv",
        bounds=f"{RESULTS}/explain/zbox_bounds.csv",
    log:
        f"{RESULTS}/logs/explain.log",
    conda:
        "../../envs/torch.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=gpu_resources(),
        gpu_model=gpu_model(),
    params:
        results=run_folder,
        examples=explain_examples(),
        per_class=config["explain"]["per_class"],
        seed=config["explain"]["seed"],
        device=config["training"]["device"],
        gpu_slots=gpu_slot_options(),
    shell:
        "benloss explain --results {params.results} --encoded {input.encoded} --examples {params.examples}"
        " --per-class {params.per_class} --seed {params.seed} --out {params.results} --threads {threads}"
        " --device {params.device} {params.gpu_slots}"
        " > {log} 2>&1"
