rule evaluate:
    input:
        model=f"{model_dir()}/model.pt",
        val_scores=f"{model_dir()}/val_scores.npy",
        encoded=f"{RESULTS}/encoded",
    output:
        metrics=f"{RESULTS}/eval/{{loss}}/seed{{seed}}/metrics.json",
        per_class=f"{RESULTS}/eval/{{loss}}/seed{{seed}}/per_class.csv",
        test_scores=f"{RESULTS}/eval/{{loss}}/seed{{seed}}/test_scores.npy",
    log:
        f"{RESULTS}/logs/evaluate/{{loss}}_seed{{seed}}.log",
    conda:
        "../../envs/torch.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=gpu_resources(),
        gpu_model=gpu_model(),
    params:
        outdir=output_folder,
        device=config["training"]["device"],
        gpu_slots=gpu_slot_options(),
    shell:
        "benloss evaluate --model {input.model} --val-scores {input.val_scores} --encoded {input.encoded}"
        " --out {params.outdir} --threads {threads} --device {params.device} {params.gpu_slots} > {log} 2>&1"


rule statistics:
    input:
        metrics=all_evaluations("metrics.json"),
        test_scores=all_evaluations("test_scores.npy"),
        runs=all_models("run.json"),
        encoded=f"{RESULTS}/encoded",
        counts=f"{RESULTS}/labels/class_counts.csv",
    output:
        intervals=f"{RESULTS}/tables/intervals.csv",
        pairwise=report(
            f"{RESULTS}/tables/pairwise.csv",
            caption="../report/pairwise.rst",
            category="3. Results",
            subcategory="Significance",
        ),
    log:
        f"{RESULTS}/logs/statistics.log",
    conda:
        "../../envs/report.yaml"
    params:
        results=run_folder,
        outdir=output_folder,
        bootstrap=config["statistics"]["bootstrap"],
        seed=config["statistics"]["seed"],
    shell:
        "benloss statistics --results {params.results} --encoded {input.encoded} --class-counts {input.counts}"
        " --out {params.outdir} --bootstrap {params.bootstrap} --seed {params.seed} > {log} 2>&1"


rule tables:
    input:
        intervals=rules.statistics.output.intervals,
        metrics=all_evaluations("metrics.json"),
        per_class=all_evaluations("per_class.csv"),
        histories=all_models("history.csv"),
        counts=f"{RESULTS}/labels/class_counts.csv",
    output:
        table1=report(
            f"{RESULTS}/tables/table1.csv",
            caption="../report/table1.rst",
            category="3. Results",
            subcategory="Table 1",
        ),
        table1_md=f"{RESULTS}/tables/table1.md",
        table1_tex=f"{RESULTS}/tables/table1.tex",
        table1_paper=f"{RESULTS}/tables/table1_paper.csv",
        table2=report(
            f"{RESULTS}/tables/table2.csv",
            caption="../report/table2.rst",
            category="3. Results",
            subcategory="Table 2",
        ),
        table2_md=f"{RESULTS}/tables/table2.md",
        per_class=report(
            f"{RESULTS}/tables/per_class_f1.csv",
            caption="../report/per_class.rst",
            category="3. Results",
            subcategory="Per class",
        ),
    log:
        f"{RESULTS}/logs/tables.log",
    conda:
        "../../envs/report.yaml"
    params:
        results=run_folder,
        outdir=output_folder,
        demo="--demo" if DEMO else "",
    shell:
        "benloss tables --results {params.results} --class-counts {input.counts} --intervals {input.intervals}"
        " --out {params.outdir} {params.demo} > {log} 2>&1"


rule figures:
    input:
        histories=all_models("history.csv"),
        counts=f"{RESULTS}/labels/class_counts.csv",
        pairwise=rules.statistics.output.pairwise,
    output:
        curves=report(
            f"{RESULTS}/figures/f1_curves.png",
            caption="../report/f1_curves.rst",
            category="2. Training",
        ),
        curves_pdf=f"{RESULTS}/figures/f1_curves.pdf",
        time_curves=report(
            f"{RESULTS}/figures/f1_time.png",
            caption="../report/f1_time.rst",
            category="2. Training",
        ),
        pairwise=report(
            f"{RESULTS}/figures/pairwise_f1.png",
            caption="../report/pairwise_f1.rst",
            category="3. Results",
            subcategory="Significance",
        ),
        counts=report(
            f"{RESULTS}/figures/class_counts.png",
            caption="../report/class_counts.rst",
            category="1. Data",
        ),
    log:
        f"{RESULTS}/logs/figures.log",
    conda:
        "../../envs/report.yaml"
    params:
        results=run_folder,
        outdir=output_folder,
    shell:
        "benloss figures --results {params.results} --class-counts {input.counts} --pairwise {input.pairwise}"
        " --out {params.outdir} > {log} 2>&1"
