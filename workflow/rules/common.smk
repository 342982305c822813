import json
import os
import re
import sys

import yaml
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

RUN = config["run"]
RESULTS = f"results/{RUN}"
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
LIST_NAMES = ["train", "val", "test", "snow", "cloud"]
DEMO_LIST_FILES = {
    "train": "train.csv",
    "val": "val.csv",
    "test": "test.csv",
    "snow": "patches_with_seasonal_snow.csv",
    "cloud": "patches_with_cloud_and_shadow.csv",
}
# BigEarthNet v2.0's files under their official names (benloss.datasets repeats them).
V2_FILES = {
    "s2": "BigEarthNet-S2.tar.zst",
    "reference_maps": "Reference_Maps.tar.zst",
    "metadata": "metadata.parquet",
    "exclusions": "metadata_for_patches_with_snow_cloud_or_shadow.parquet",
}
DEMO_ARCHIVE = f"{RESULTS}/demo_archive"
# The demo's files in each layout, as benloss.synth writes them.
DEMO_FILES = {
    "v1": {
        "archive": "BigEarthNet-demo.tar.gz",
        "reference_maps": V2_FILES["reference_maps"],
        "statistics": "band_statistics.csv",
        **{name: f"lists/{file}" for name, file in DEMO_LIST_FILES.items()},
    },
    "v2": {
        "archive": V2_FILES["s2"],
        "reference_maps": V2_FILES["reference_maps"],
        "metadata": V2_FILES["metadata"],
        "exclusions": V2_FILES["exclusions"],
    },
}
# Rules call `benloss <step>`: the package of this checkout, run with --use-conda by each rule's
# environment, otherwise by the Python that runs Snakemake (the project's venv), whatever PATH says.
USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PYTHON = "python" if USE_CONDA else sys.executable
# (Snakemake formats the prefix too, hence the doubled braces of the shell function.)
shell.prefix(
    f'set -euo pipefail; benloss() {{{{ PYTHONPATH={workflow.basedir}/src {PYTHON} -m benloss "$@"; }}}}; '
)


wildcard_constraints:
    loss="|".join(LOSSES),
    seed=r"\d+",


def demo_outputs():
    """Outputs of synth (the demo files of its layout, and its region masks)."""
    files = DEMO_FILES[config["data"]["demo"]["format"]]
    return {key: f"{DEMO_ARCHIVE}/{file}" for key, file in files.items()} | {
        "masks": f"{DEMO_ARCHIVE}/masks.npz"
    }


def v2_path(role):
    """A v2.0 file (role a key of V2_FILES): the local copy if configured, else the download."""
    v2 = config["data"]["v2"]
    return v2[role] or f"{v2['download']['folder']}/{V2_FILES[role]}"


def downloads():
    """Every file to download, by output path, with its url, md5 and retries."""
    if SOURCE == "bigearthnet" and not config["data"]["archive"]:
        download = config["data"]["download"]
        return {download["path"]: download}
    if SOURCE == "bigearthnet-v2":
        download = config["data"]["v2"]["download"]
        return {
            v2_path(role): download[role] | {"retries": download["retries"]}
            for role in V2_FILES
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
            "statistics", config["data"]["band_statistics"]
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


def source_arguments(wildcards, input):
    """`--dataset --layout --archive` and one option per file of the source."""
    options = [f"--dataset {DATASET} --layout {LAYOUT} --archive {archive_path()}"]
    for name in source_files():
        if name != "archive":
            options.append(f"--{name.replace('_', '-')} {input[name]}")
    return " ".join(options)


def run_folder(wildcards):
    """results/<run>, for steps that read a whole run's results."""
    return RESULTS


def output_folder(wildcards, output):
    """The folder of a rule's first output, for steps that write several files there."""
    return os.path.dirname(output[0])


def model_dir(loss="{loss}", seed="{seed}"):
    return f"{RESULTS}/models/{loss}/seed{seed}"


def train_flags(wildcards):
    training = config["training"]
    flags = []
    if training["amp"]:
        flags.append("--amp")
    if training["channels_last"]:
        flags.append("--channels-last")
    if training["data_on_device"]:
        flags.append("--data-on-device")
    return " ".join(flags)


def loss_params(wildcards):
    """The loss's parameters as a shell-quoted JSON object."""
    params = config["loss_params"].get(wildcards.loss, {})
    return f"'{json.dumps(params)}'"


def gpu_resources():
    return 1 if config["training"]["gpu"] else 0


def gpu_slot_options():
    """How GPU jobs share the cards of a machine without a scheduler (see benloss.gpu)."""
    training = config["training"]
    options = f"--jobs-per-gpu {training['jobs_per_gpu']}"
    if training["gpu_lock_dir"]:
        options += f" --gpu-lock-dir {training['gpu_lock_dir']}"
    return options


def gpu_model():
    """The GPU model SLURM should allocate, or "" for any."""
    return (config["training"]["gpu"] and config["training"]["gpu_model"]) or ""


def all_models(name):
    return expand(
        f"{RESULTS}/models/{{loss}}/seed{{seed}}/{name}", loss=LOSSES, seed=SEEDS
    )


def all_evaluations(name):
    return expand(
        f"{RESULTS}/eval/{{loss}}/seed{{seed}}/{name}", loss=LOSSES, seed=SEEDS
    )


def explain_examples():
    return f"'{json.dumps(config['explain']['examples'])}'"


def all_outputs():
    return [f"{RESULTS}/report.html"]
