import json
import os
import sys

import yaml
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

RUN = config["run"]
RESULTS = f"results/{RUN}"
DEMO = config["data"]["source"] == "demo"
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


def archive_path():
    """The archive the label and encode stages read: the demo's, a local copy, or the download."""
    if DEMO:
        return f"{RESULTS}/demo_archive/BigEarthNet-demo.tar.gz"
    return config["data"]["archive"] or config["data"]["download"]["path"]


def list_paths():
    """Split and exclusion lists, keyed by LIST_NAMES."""
    if DEMO:
        return {
            name: f"{RESULTS}/demo_archive/lists/{DEMO_LIST_FILES[name]}"
            for name in LIST_NAMES
        }
    return {name: config["data"]["lists"][name] for name in LIST_NAMES}


def band_statistics_path():
    if DEMO:
        return f"{RESULTS}/demo_archive/band_statistics.csv"
    return config["data"]["band_statistics"]


def list_arguments(wildcards, input):
    return " ".join(f"--{name} {input[name]}" for name in LIST_NAMES)


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
