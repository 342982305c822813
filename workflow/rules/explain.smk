rule explain:
    input:
        unpack(explain_inputs),
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
        conservation=f"{RESULTS}/explain/conservation.csv",
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
        masks=demo_masks_argument,
        device=config["training"]["device"],
        gpu_slots=gpu_slot_options(),
    shell:
        "benloss explain --results {params.results} --encoded {input.encoded} --examples {params.examples}"
        " {params.masks} --out {params.results} --threads {threads} --device {params.device}"
        " {params.gpu_slots} > {log} 2>&1"
