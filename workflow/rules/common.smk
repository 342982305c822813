import json
import os
import re
import sys

import yaml
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

# The results tree and the official file names have one home, shared with the package (standard library only).
sys.path.insert(0, f"{workflow.basedir}/src")
from benloss import layout
from benloss.architectures.registry import ARCHITECTURES as KNOWN_ARCHITECTURES
from benloss.facts.splits import SPLITS
from benloss.training.config import RUN_SETTINGS

RUN = config["run"]
RESULTS = f"{config['results']}/{RUN}"
SOURCE = config["data"]["source"]
DEMO = SOURCE == "demo"
# The dataset name the package knows, and the layout its files follow (BigEarthNet v1.0 or v2.0).
DATASET = {
    "demo": "demo",
    "bigearthnet": "bigearthnet-v1",
    "bigearthnet-v2": "bigearthnet-v2",
}[SOURCE]
LAYOUT = (
    config["data"]["demo"]["format"] if DEMO else DATASET.removeprefix("bigearthnet-")
)
LOSSES = config["training"]["losses"]
SEEDS = config["training"]["seeds"]
ARCHITECTURES = config["model"]["architectures"]
# The report's architecture (the first listed), and Fig. 1's (the first with a sound LRP composite).
PRIMARY = ARCHITECTURES[0]
EXPLAINED = [a for a in ARCHITECTURES if KNOWN_ARCHITECTURES[a].explained]
if not EXPLAINED:
    raise ValueError(
        f"model.architectures {ARCHITECTURES}: none has a sound LRP composite for Fig. 1; add one of "
        f"{[a for a, known in KNOWN_ARCHITECTURES.items() if known.explained]}"
    )
LIST_NAMES = list(layout.V1_LIST_FILES)
LANDSCAPE = config["landscape"]
# With landscape.snapshots, every model's loss landscape is measured after its training.
LANDSCAPES = LANDSCAPE["snapshots"] > 0


def run_epochs(arch):
    """Epochs of an architecture's runs: its recipe's, else the training section's."""
    return (
        config["model"]["recipes"]
        .get(arch, {})
        .get("epochs", config["training"]["epochs"])
    )


if LANDSCAPES:
    if LANDSCAPE["snapshots"] < 2:
        raise ValueError(
            "landscape.snapshots 1: the trajectory's plane needs the initial weights and at least two snapshots"
        )
    if LANDSCAPE["grid"] % 2 == 0:
        raise ValueError(
            f"landscape.grid {LANDSCAPE['grid']}: must be odd, so the trained weights are its centre"
        )
    short = [a for a in ARCHITECTURES if run_epochs(a) < LANDSCAPE["snapshots"]]
    if short:
        raise ValueError(
            f"landscape.snapshots {LANDSCAPE['snapshots']}: more snapshots than epochs for {short}"
        )
DEMO_ARCHIVE = f"{RESULTS}/demo_archive"
ENCODED = f"{RESULTS}/encoded"
LABELS = f"{RESULTS}/labels"
# Rules call `benloss <step>`: the package of this checkout, run with --use-conda by each rule's
# environment, otherwise by the Python that runs Snakemake (the project's venv), whatever PATH says.
USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PYTHON = "python" if USE_CONDA else sys.executable
# (Snakemake formats the prefix too, hence the doubled braces of the shell function.)
shell.prefix(
    f'set -euo pipefail; benloss() {{{{ PYTHONPATH={workflow.basedir}/src {PYTHON} -m benloss "$@"; }}}}; '
)


wildcard_constraints:
    arch="|".join(ARCHITECTURES),
    loss="|".join(LOSSES),
    seed=r"\d+",


def demo_outputs():
    """Outputs of synth (the demo files of its layout, and its region masks)."""
    files = layout.DEMO_FILES[config["data"]["demo"]["format"]]
    return {key: f"{DEMO_ARCHIVE}/{file}" for key, file in files.items()} | {
        "masks": f"{DEMO_ARCHIVE}/{layout.DEMO_MASKS}"
    }


def v2_path(role):
    """A v2.0 file (role a key of layout.V2_FILES): the local copy if configured, else the download."""
    v2 = config["data"]["v2"]
    return v2[role] or f"{v2['download']['folder']}/{layout.V2_FILES[role]}"


def downloads():
    """Every file to download, by output path, with its url, md5 and retries."""
    if SOURCE == "bigearthnet" and not config["data"]["archive"]:
        download = config["data"]["download"]
        return {download["path"]: download}
    if SOURCE == "bigearthnet-v2":
        download = config["data"]["v2"]["download"]
        return {
            v2_path(role): download[role] | {"retries": download["retries"]}
            for role in layout.V2_FILES
            if not config["data"]["v2"][role]
        }
    return {}


DOWNLOADS = downloads()


def archive_path():
    """The archive the prepare step reads: the demo's, a local copy, or the download."""
    if DEMO:
        return demo_outputs()["archive"]
    if SOURCE == "bigearthnet-v2":
        return v2_path("s2")
    return config["data"]["archive"] or config["data"]["download"]["path"]


def source_files():
    """The files the prepare step reads, keyed by their `benloss` option."""
    demo = demo_outputs() if DEMO else {}
    files = {}
    if LAYOUT == "v1":
        files["band_statistics"] = demo.get(
            "band_statistics", config["data"]["band_statistics"]
        )
        files |= {
            name: demo.get(name, config["data"]["lists"][name]) for name in LIST_NAMES
        }
    else:
        files["metadata"] = demo.get("metadata") or v2_path("metadata")
        files["exclusions"] = demo.get("exclusions") or v2_path("exclusions")
    files["archive"] = archive_path()
    if DEMO or LAYOUT == "v2":
        files["reference_maps"] = demo.get("reference_maps") or v2_path(
            "reference_maps"
        )
    return files


def prepare_inputs(wildcards):
    return source_files()


def subset_lists():
    """The drawn patch lists under labels/, written where data.subset keeps less than a whole split somewhere
    (a size other than 1, as benloss.data.subset.Subset.draws says)."""
    subset = config["data"]["subset"]
    if all(subset[split] == 1 for split in SPLITS):
        return {}
    return {
        f"subset_{split}": f"{LABELS}/{layout.subset_list(split)}" for split in SPLITS
    }


def selection_arguments():
    """data.subset and data.allow_missing as prepare's options."""
    subset = config["data"]["subset"]
    options = [f"--subset-{split} {subset[split]}" for split in SPLITS]
    options.append(f"--subset-seed {subset['seed']}")
    if config["data"]["allow_missing"]:
        options.append("--allow-missing")
    return " ".join(options)


def source_arguments(wildcards, input):
    """`--dataset --layout --archive` and one option per file of the source."""
    options = [f"--dataset {DATASET} --layout {LAYOUT} --archive {archive_path()}"]
    for name in source_files():
        if name != "archive":
            options.append(f"--{name.replace('_', '-')} {input[name]}")
    return " ".join(options)


def output_folder(wildcards, output):
    """The folder of a rule's first output, for steps that write several files there."""
    return os.path.dirname(output[0])


def run_folder(wildcards, output):
    """results/<run>/<arch>, from the explanation's outputs (it writes into figures/, tables/ and explain/ there)."""
    return os.path.dirname(os.path.dirname(output.conservation))


def input_options(wildcards, input):
    """Every named input as `--name path ...`: an aggregating step reads exactly the files its rule declares."""
    return " ".join(
        f"--{name.replace('_', '-')} {' '.join(map(str, input[name]) if isinstance(input[name], list) else [str(input[name])])}"
        for name in input.keys()
    )


def model_file(role, arch="{arch}", loss="{loss}", seed="{seed}"):
    """One trained model's file (role a key of layout.MODEL_FILES)."""
    return (
        f"{layout.model_folder(RESULTS, arch, loss, seed)}/{layout.MODEL_FILES[role]}"
    )


def evaluation_file(role, arch="{arch}", loss="{loss}", seed="{seed}"):
    """One evaluation's file (role a key of layout.EVALUATION_FILES)."""
    return f"{layout.evaluation_folder(RESULTS, arch, loss, seed)}/{layout.EVALUATION_FILES[role]}"


def all_models(role, arch="{arch}", seeds=None):
    """A file of every configured model of one architecture (of `seeds` only, if given)."""
    return [
        model_file(role, arch, loss, seed) for loss in LOSSES for seed in seeds or SEEDS
    ]


def all_evaluations(role, arch="{arch}"):
    return [
        evaluation_file(role, arch, loss, seed) for loss in LOSSES for seed in SEEDS
    ]


def every_architecture(files, role):
    """`files(role, arch)` for every configured architecture, in one list."""
    return [path for arch in ARCHITECTURES for path in files(role, arch)]


def label_file(role):
    return f"{LABELS}/{layout.LABEL_FILES[role]}"


def architecture_folder(arch="{arch}"):
    return layout.architecture_folder(RESULTS, arch)


def table_file(role, arch="{arch}"):
    return f"{architecture_folder(arch)}/tables/{layout.TABLE_FILES[role]}"


def figure_file(role, arch="{arch}"):
    return f"{architecture_folder(arch)}/figures/{layout.FIGURE_FILES[role]}"


def bootstrap_file(role, arch="{arch}"):
    return f"{architecture_folder(arch)}/tables/{layout.BOOTSTRAP_FILES[role]}"


def explanation_file(role, arch="{arch}"):
    return f"{architecture_folder(arch)}/{layout.EXPLANATION_FILES[role]}"


def snapshot_outputs(arch="{arch}", loss="{loss}", seed="{seed}"):
    """A model's weight snapshots (layout.snapshot_epochs: the initial weights and landscape.snapshots more), or
    none; as many for every architecture, since none has fewer epochs than snapshots."""
    folder = f"{layout.model_folder(RESULTS, arch, loss, seed)}/{layout.SNAPSHOTS}"
    count = len(
        layout.snapshot_epochs(run_epochs(ARCHITECTURES[0]), LANDSCAPE["snapshots"])
    )
    return [f"{folder}/{layout.snapshot(i)}" for i in range(count)]


def landscape_file(role, arch="{arch}", loss="{loss}", seed="{seed}"):
    """One model's landscape file (role a key of layout.LANDSCAPE_FILES)."""
    return f"{layout.landscape_folder(RESULTS, arch, loss, seed)}/{layout.LANDSCAPE_FILES[role]}"


def landscape_summary_file(role, arch="{arch}"):
    """An architecture's landscape figure or table (role a key of layout.LANDSCAPE_SUMMARY_FILES)."""
    return f"{architecture_folder(arch)}/{layout.LANDSCAPE_SUMMARY_FILES[role]}"


def comparison_file(role):
    """A file of the comparison across architectures (role a key of layout.ARCHITECTURE_FILES)."""
    return f"{RESULTS}/architectures/{layout.ARCHITECTURE_FILES[role]}"


def as_json(value):
    """A config value as one shell-quoted JSON word."""
    return f"'{json.dumps(value)}'"


def training_settings():
    """The training section's settings of one run (benloss.training.config.RUN_SETTINGS) as JSON: the study's
    losses and seeds and the scheduling keys stay out, so changing them retrains nothing.
    """
    training = config["training"]
    return as_json({key: training[key] for key in RUN_SETTINGS if key in training})


def model_settings(wildcards):
    """The model section for one architecture's runs: the width (the K-Branch CNN's only) and that architecture's
    recipe, so adding an architecture or changing the width retrains none of the others.
    """
    model = {"width": config["model"]["width"]} if wildcards.arch == "kbranch" else {}
    recipe = config["model"]["recipes"].get(wildcards.arch)
    if recipe:
        model["recipes"] = {wildcards.arch: recipe}
    return as_json(model)


def architecture_resource(name):
    """A training job's resource `name` (mem_mb, runtime, jobs_per_gpu) for its architecture: model.resources
    where it names one, else the training section's."""

    def resource(wildcards):
        given = config["model"]["resources"].get(wildcards.arch, {})
        return given.get(name, config["training"][name])

    return resource


def loss_params(wildcards):
    """The loss's parameters as a shell-quoted JSON object."""
    return as_json(config["loss_params"].get(wildcards.loss, {}))


def gpu_resources():
    return 1 if config["training"]["gpu"] else 0


def gpu_slot_options(wildcards):
    """How GPU jobs share the cards of a machine without a scheduler (see benloss.gpu); an architecture's
    model.resources may set its own jobs_per_gpu."""
    training = config["training"]
    options = f"--jobs-per-gpu {architecture_resource('jobs_per_gpu')(wildcards)}"
    if training["gpu_lock_dir"]:
        options += f" --gpu-lock-dir {training['gpu_lock_dir']}"
    return options


def gpu_model():
    """The GPU model SLURM should allocate, or "" for any."""
    return (config["training"]["gpu"] and config["training"]["gpu_model"]) or ""


def explain_examples():
    return as_json(config["explain"]["examples"])


def report_inputs():
    """The report's inputs, named as the fields of benloss.report.html.ReportInputs: the first architecture's
    results, Fig. 1 of the first explained one, and with several architectures their comparison.
    """
    explained = EXPLAINED[0]
    inputs = {
        "config": f"{RESULTS}/{layout.RUN_CONFIG}",
        "summary": label_file("summary"),
        "encoded": ENCODED,
        "table1": table_file("table1", PRIMARY),
        "table2": table_file("table2", PRIMARY),
        "per_class": table_file("per_class", PRIMARY),
        "pairwise": bootstrap_file("pairwise", PRIMARY),
        "lrp_scores": explanation_file("scores", explained),
        "conservation": explanation_file("conservation", explained),
        "zbox_bounds": explanation_file("bounds", explained),
        "class_counts_figure": figure_file("counts", PRIMARY),
        "f1_curves": figure_file("curves", PRIMARY),
        "f1_time": figure_file("time_curves", PRIMARY),
        "pairwise_figure": figure_file("pairwise", PRIMARY),
        "per_class_ap": table_file("per_class_ap", PRIMARY),
        "probability": table_file("probability", PRIMARY),
        "pr_curves_figure": figure_file("pr_curves", PRIMARY),
        "reliability_figure": figure_file("reliability", PRIMARY),
        "lrp_heatmaps": explanation_file("figure", explained),
        "lrp_scores_figure": explanation_file("chart", explained),
        "runs": all_models("run", PRIMARY),
        "baselines": all_models("baseline", PRIMARY),
    }
    if LANDSCAPES:
        inputs |= {
            "landscape_figure": landscape_summary_file("figure", PRIMARY),
            "landscape_slices": landscape_summary_file("slices", PRIMARY),
        }
    if len(ARCHITECTURES) > 1:
        inputs |= {
            "architecture_headline": comparison_file("headline"),
            "architecture_ranking": comparison_file("ranking"),
            "architecture_agreement": comparison_file("agreement"),
            "architecture_figure": comparison_file("figure"),
            "architecture_pairwise": [
                bootstrap_file("pairwise", a) for a in ARCHITECTURES
            ],
            "architecture_conservation": [
                explanation_file("conservation", a) for a in EXPLAINED
            ],
        }
    if DEMO:
        inputs["archive"] = archive_path()
    return inputs


def all_outputs():
    """The report, and every architecture's tables, figures and (where it is explained) explanations."""
    outputs = [f"{RESULTS}/{layout.REPORT}"]
    for arch in ARCHITECTURES:
        outputs += [table_file("table1", arch), figure_file("curves", arch)]
        if arch in EXPLAINED:
            outputs.append(explanation_file("conservation", arch))
        if LANDSCAPES:
            outputs.append(landscape_summary_file("table", arch))
    return outputs
