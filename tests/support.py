"""What several test modules share: the checkout's paths, running Snakemake, skipping for a missing tool, and
fake results with known numbers. No tests here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benloss.facts.loss_catalog import PAPER_LOSS_IDS, loss_info
from benloss.facts.nomenclature import classes
from benloss.facts.splits import list_paths

ROOT = Path(__file__).resolve().parents[1]
#: Real files no one here wrote: the official example patches, BigEarthNet v2.0 patches and reference maps.
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLE_ARCHIVE = FIXTURES / "BigEarthNet-S2-Example.tar.bz2"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY = ROOT / ".test" / "config" / "config.yaml"
#: Set by `benchmarks/gpu_check.py --smoke`: the tests marked ``gpu`` run on the CPU (the code paths, not the card).
GPU_TESTS_ON_CPU = "BENLOSS_GPU_TESTS_ON_CPU"
#: BigEarthNet v2.0: the official metadata as shipped, and real patches: a test patch with its bands and reference
#: map, and a validation patch with its bands only.
V2_SHIPPED = ROOT / "resources" / "bigearthnet_v2"
V2_REAL = FIXTURES / "bigearthnet-v2"
V2_TILE = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
V2_TEST_PATCH = f"{V2_TILE}_26_57"
V2_VAL_PATCH = f"{V2_TILE}_75_43"


def snakemake(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def require_tool(name: str, reason: str) -> str:
    """The tool's path; a skip with ``reason`` where it is missing, but a failure under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: {reason}"
        if IN_CI:
            pytest.fail(message + " (CI must install it: see .ci/run)")
        pytest.skip(message)
    return path


def partial_v2_archive(folder: Path, sizes: dict[str, int]) -> dict[str, str]:
    """A partial copy of BigEarthNet v2.0 in ``folder`` (``BigEarthNet-S2/``, ``Reference_Maps/``), as a user with
    a part of the archive has: ``sizes[split]`` patches of each split of the official metadata. They are the two
    real patches under their own names and, to fill the splits, the first other patches of each split by name,
    holding the real patches' band files (the validation patch's in val, the test patch's elsewhere), so their
    pixels are real but not theirs. Only the real test patch has its reference map. Returns each patch's name and
    the real patch whose files it holds."""
    metadata = pd.read_parquet(V2_SHIPPED / "metadata.parquet")
    real = {"val": V2_VAL_PATCH, "test": V2_TEST_PATCH}
    chosen = {}
    for split, official in (("train", "train"), ("val", "validation"), ("test", "test")):
        names = sorted(set(metadata.loc[metadata["split"] == official, "patch_id"]) - set(real.values()))
        source = real.get(split, V2_TEST_PATCH)
        picked = ([source] if split in real else []) + names
        chosen |= dict.fromkeys(picked[: sizes[split]], source)
    for name, source in chosen.items():
        target = folder / "BigEarthNet-S2" / name.rsplit("_", 2)[0] / name
        target.mkdir(parents=True)
        for band in sorted((V2_REAL / "BigEarthNet-S2" / V2_TILE / source).iterdir()):
            shutil.copyfile(band, target / band.name.replace(source, name))
    shutil.copytree(V2_REAL / "Reference_Maps", folder / "Reference_Maps")
    return chosen


def demo_lists(folder: Path) -> dict[str, Path]:
    return list_paths(folder / "lists")


def run_files(root: Path, pattern: str) -> list[Path]:
    """The files of a fake run matching ``pattern`` (e.g. ``models/*/*/seed*/history.csv``), as a rule lists them."""
    return sorted(Path(root).glob(pattern))


def histories_of(root: Path) -> list[Path]:
    return run_files(root, "models/*/*/seed*/history.csv")


def table_inputs(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """The evaluations' ``metrics.json`` and ``per_class.csv`` and the ``history.csv`` files of a fake run."""
    return (
        run_files(root, "eval/*/*/seed*/metrics.json"),
        run_files(root, "eval/*/*/seed*/per_class.csv"),
        histories_of(root),
    )


def write_fake_run(root: Path, losses=PAPER_LOSS_IDS, seeds=(0, 1)) -> dict:
    """Histories and metrics with known numbers: loss i, seed s has test F1 = 0.1 i + 0.01 s."""
    truth = {}
    for i, loss in enumerate(losses):
        for seed in seeds:
            f1 = 0.1 * i + 0.01 * seed
            truth[(loss, seed)] = f1
            folder = root / "models" / "kbranch" / loss / f"seed{seed}"
            folder.mkdir(parents=True)
            epochs = np.arange(1, 6)
            curve = f1 * np.minimum(epochs / (i + 1), 1.0)
            pd.DataFrame({"epoch": epochs, "train_loss": 1.0, "val_loss": 1 / epochs, "f1_samples": curve,
                          "f1_micro": curve, "f1_macro": curve, "map_macro": 0.9 * curve,
                          "zero_grad_fraction": 0.01 * i,
                          "train_seconds": 1.0 + i, "val_seconds": 1.0, "images_per_second": 1.0}).to_csv(
                folder / "history.csv", index=False)  # fmt: skip
            evaluation = root / "eval" / "kbranch" / loss / f"seed{seed}"
            evaluation.mkdir(parents=True)
            own = {"precision_samples": f1 + 0.05, "recall_samples": f1 - 0.05, "f1_samples": f1, "f1_micro": f1,
                   "f1_macro": f1 / 2, "precision_micro": f1 + 0.04, "recall_micro": f1 - 0.04,
                   "precision_macro": f1 / 2 + 0.01, "recall_macro": f1 / 2 - 0.01}  # fmt: skip
            document = {"own_rule": own, "calibrated": {"f1_samples": f1 + 0.1},
                        "calibrated_per_class": {"f1_macro": f1 / 2 + 0.05},
                        "ranking": {"map_macro": f1 + 0.02, "map_micro": f1 + 0.03, "auroc_macro": 0.5 + f1 / 2},
                        "probability": {"ece": 0.01 * (i + 1), "brier": 0.1 + 0.01 * seed}
                        if loss_info(loss).sigmoid_probability else None}  # fmt: skip
            (evaluation / "metrics.json").write_text(json.dumps(document))
            pd.DataFrame({"class": classes(), "precision": f1, "recall": f1, "f1": np.linspace(0, f1, 19),
                          "support": 1, "ap": np.linspace(f1, 1, 19)}).to_csv(evaluation / "per_class.csv",
                                                                             index=False)  # fmt: skip
    counts = pd.DataFrame({"class": classes(), "train": np.arange(19, 0, -1), "val": 1, "test": 1})
    counts.to_csv(root / "class_counts.csv", index=False)
    return truth
