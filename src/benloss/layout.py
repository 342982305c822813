"""The one home of the results tree and of the official file names, standard library only.

``workflow/rules/common.smk`` imports this module to name every rule's inputs and outputs, and the package
imports it to name what it writes, so no path or file name is written twice. A run's tree::

    results/<run>/
        config.yaml                      the run's configuration
        demo_archive/                    the synthetic archive (demo only)
        labels/                          LABEL_FILES, subset_list(split) (with data.subset)
        encoded/                         encoded_array(split, part), patch_list(split), ENCODED_FILES
        models/<arch>/<loss>/seed<seed>/ MODEL_FILES (and the checkpoint while training)
        eval/<arch>/<loss>/seed<seed>/   EVALUATION_FILES
        landscape/<arch>/<loss>/seed<seed>/  LANDSCAPE_FILES (with landscape.snapshots)
        <arch>/tables/ figures/ explain/ one architecture's TABLE_FILES, FIGURE_FILES, EXPLANATION_FILES
        architectures/                   ARCHITECTURE_FILES, the losses compared across architectures
        logs/                            one log per job
        report.html
"""

from __future__ import annotations

import re
from pathlib import PurePath

from benloss.errors import InputError

#: Where ``results/<run>/`` folders go unless the config's ``results`` says otherwise.
RESULTS = "results"

#: The label stage's files (under ``labels/``).
LABEL_FILES = {"table": "patches.parquet", "counts": "class_counts.csv", "summary": "summary.json"}
#: The encoded folder's files besides the per-split arrays.
ENCODED_FILES = {
    "meta": "meta.json",
    "band_statistics": "band_statistics.csv",  # what the trainer normalises with
    "training_band_statistics": "training_band_statistics.csv",  # exact, computed while encoding
}
#: The part of a per-split encoded array that holds reference maps (the band groups and ``labels`` are the others).
REFERENCE_MAPS = "reference_maps"
#: One trained model's files (under ``models/<arch>/<loss>/seed<seed>/``).
MODEL_FILES = {
    "model": "model.pt",
    "history": "history.csv",
    "val_scores": "val_scores.npy",
    "baseline": "baseline.json",
    "run": "run.json",
}
CHECKPOINT = "checkpoint.pt"
#: Where a model's weight snapshots go (``landscape.snapshots``), under its folder; while it trains they wait in
#: ``SNAPSHOTS_IN_PROGRESS`` (undeclared, like the checkpoint, so a failed job's cleanup never takes them).
SNAPSHOTS = "snapshots"
SNAPSHOTS_IN_PROGRESS = "snapshots_in_progress"
#: One evaluation's files (under ``eval/<arch>/<loss>/seed<seed>/``).
EVALUATION_FILES = {
    "metrics": "metrics.json",
    "per_class": "per_class.csv",
    "test_scores": "test_scores.npy",
    "pr_curve": "pr_curve.csv",  # micro precision-recall curve on the ranking score
    "reliability": "reliability.csv",  # reliability bins of σ(z) (header only where σ(z) is no probability)
}
#: The bootstrap's tables (under ``tables/``).
BOOTSTRAP_FILES = {"intervals": "intervals.csv", "pairwise": "pairwise.csv",
                   "per_class_intervals": "per_class_intervals.csv"}  # fmt: skip
#: The report stage's tables (under ``tables/``).
TABLE_FILES = {
    "table1": "table1.csv",
    "table1_md": "table1.md",
    "table1_tex": "table1.tex",
    "table1_paper": "table1_paper.csv",
    "table2": "table2.csv",
    "table2_md": "table2.md",
    "per_class": "per_class_f1.csv",
    "per_class_ap": "per_class_ap.csv",  # test AP per class on each loss's ranking score
    "probability": "probability.csv",  # ECE and Brier score of σ(z), where it is a probability
}
#: The report stage's figures (under ``figures/``).
FIGURE_FILES = {
    "curves": "f1_curves.png",
    "curves_pdf": "f1_curves.pdf",
    "time_curves": "f1_time.png",
    "pairwise": "pairwise_f1.png",
    "counts": "class_counts.png",
    "pr_curves": "pr_curves.png",  # micro precision-recall curves, one per loss
    "reliability": "reliability.png",  # reliability diagrams of σ(z)
}
#: The explanation stage's files, relative to an architecture's folder (``<run>/<arch>``).
EXPLANATION_FILES = {
    "figure": "figures/lrp_heatmaps.png",
    "figure_pdf": "figures/lrp_heatmaps.pdf",
    "relevance": "explain/relevance.npz",
    "scores": "tables/lrp_scores.csv",
    "examples": "explain/lrp_examples.csv",
    "chart": "figures/lrp_scores.png",
    "chart_pdf": "figures/lrp_scores.pdf",
    "conservation": "explain/conservation.csv",
    "bounds": "explain/zbox_bounds.csv",
}
#: One model's loss landscape (under ``landscape/<arch>/<loss>/seed<seed>/``).
LANDSCAPE_FILES = {"arrays": "landscape.npz", "summary": "landscape.json"}
#: An architecture's landscapes summarised (under ``<arch>/``): Fig. 3 and its slices, and the measured convexity.
LANDSCAPE_SUMMARY_FILES = {
    "figure": "figures/landscapes.png",
    "figure_pdf": "figures/landscapes.pdf",
    "slices": "figures/landscape_slices.png",
    "table": "tables/landscape.csv",
}
#: The comparison across architectures (under ``architectures/``).
ARCHITECTURE_FILES = {
    "headline": "headline.csv",  # Table 1's headline rows per architecture
    "ranking": "ranking.csv",  # the losses' ranks per architecture and metric
    "agreement": "agreement.csv",  # Kendall's tau between architectures' rankings, with intervals
    "figure": "ranking.png",
    "figure_pdf": "ranking.pdf",
}
REPORT = "report.html"
RUN_CONFIG = "config.yaml"

#: BigEarthNet-S2 v2.0's files under their official names.
V2_FILES = {
    "s2": "BigEarthNet-S2.tar.zst",
    "reference_maps": "Reference_Maps.tar.zst",
    "metadata": "metadata.parquet",
    "exclusions": "metadata_for_patches_with_snow_cloud_or_shadow.parquet",
}
#: BigEarthNet-S2 v1.0's split and exclusion lists under their official names.
V1_LIST_FILES = {
    "train": "train.csv",
    "val": "val.csv",
    "test": "test.csv",
    "snow": "patches_with_seasonal_snow.csv",
    "cloud": "patches_with_cloud_and_shadow.csv",
}
#: The demo archive in v1.0 layout, and its region masks (the demo's ground truth of where each class is).
DEMO_V1_ARCHIVE = "BigEarthNet-demo.tar.gz"
DEMO_MASKS = "masks.npz"
#: The demo's files in each layout, relative to its folder, as ``benloss.data.synth`` writes them.
DEMO_FILES = {
    "v1": {
        "archive": DEMO_V1_ARCHIVE,
        "reference_maps": V2_FILES["reference_maps"],
        "band_statistics": ENCODED_FILES["band_statistics"],
        **{name: f"lists/{file}" for name, file in V1_LIST_FILES.items()},
    },
    "v2": {
        "archive": V2_FILES["s2"],
        "reference_maps": V2_FILES["reference_maps"],
        "metadata": V2_FILES["metadata"],
        "exclusions": V2_FILES["exclusions"],
    },
}

_MODEL_FOLDER = re.compile(
    r"(?:^|/)(?:models|eval|landscape)/(?P<architecture>[a-z0-9_]+)/(?P<loss>[a-z0-9_]+)/seed(?P<seed>\d+)/[^/]+$"
)


def encoded_array(split: str, part: str) -> str:
    """File name of one encoded array: ``part`` a band group name, ``labels`` or ``REFERENCE_MAPS``."""
    return f"{split}_{part}.npy"


def subset_list(split: str) -> str:
    """File name (under ``labels/``) of a split's patches drawn by ``data.subset``, in the official lists' format;
    written only where the subset keeps less than a whole split somewhere (a size other than 1)."""
    return f"subset_{split}.csv"


def patch_list(split: str) -> str:
    """File name of a split's patch names, one a line, in the row order of its arrays."""
    return f"{split}_patches.txt"


def snapshot(number: int) -> str:
    """File name (under a model's ``SNAPSHOTS`` folder) of its snapshot ``number`` (0 the initial weights; the file
    holds its epoch)."""
    return f"snapshot{number:02d}.pt"


def snapshot_epochs(epochs: int, snapshots: int) -> list[int]:
    """The epochs after which training keeps the weights, 0 for the initial ones: then ``snapshots`` evenly
    spaced, the last one the last epoch (every fifth of 80 for 16); none for 0."""
    if snapshots <= 0:
        return []
    return [0, *sorted({round(i * epochs / snapshots) for i in range(1, snapshots + 1)} - {0})]


def model_folder(run: str, architecture: str, loss: str, seed: int | str) -> str:
    """``<run>/models/<arch>/<loss>/seed<seed>``: one trained model's folder."""
    return f"{run}/models/{architecture}/{loss}/seed{seed}"


def evaluation_folder(run: str, architecture: str, loss: str, seed: int | str) -> str:
    """``<run>/eval/<arch>/<loss>/seed<seed>``: one model's test evaluation."""
    return f"{run}/eval/{architecture}/{loss}/seed{seed}"


def landscape_folder(run: str, architecture: str, loss: str, seed: int | str) -> str:
    """``<run>/landscape/<arch>/<loss>/seed<seed>``: one model's loss landscape."""
    return f"{run}/landscape/{architecture}/{loss}/seed{seed}"


def architecture_folder(run: str, architecture: str) -> str:
    """``<run>/<arch>``: one architecture's tables, figures and explanations."""
    return f"{run}/{architecture}"


def _model_match(path: str | PurePath) -> re.Match:
    match = _MODEL_FOLDER.search(PurePath(path).as_posix())
    if match is None:
        raise InputError(f"{path}: not a file of models/<arch>/<loss>/seed<seed>/ or eval/<arch>/<loss>/seed<seed>/")
    return match


def model_of(path: str | PurePath) -> tuple[str, int]:
    """(loss, seed) of a file in a model's or an evaluation's folder, read from its path."""
    match = _model_match(path)
    return match["loss"], int(match["seed"])


def architecture_of(path: str | PurePath) -> str:
    """The architecture of a file in a model's or an evaluation's folder, read from its path."""
    return _model_match(path)["architecture"]
