"""How the test set's bootstrap interval widens with the spatial block size, on real patch names and labels.

    PYTHONPATH=src .venv/bin/python benchmarks/block_size.py                      # v2.0 and v1.0 test splits
    PYTHONPATH=src .venv/bin/python benchmarks/block_size.py --demo results/demo  # also a demo run's test split

Data: v2.0, the test split of ``resources/bigearthnet_v2/metadata.parquet`` (names and labels); v1.0, the official
test list ``resources/splits/test.csv.bz2`` with each patch's labels from the same metadata (its ``s2v1_name``;
v1.0 patches that v2.0 dropped are left out); the demo, the encoded test split of a finished demo run.

No model is trained on these, so two predictors stand in whose errors are functions of the labels: the
training split's three most frequent classes for every patch (its errors follow land cover exactly), and a noisy
oracle that gets each entry right with probability 0.85, independently (its errors follow land cover only through
which classes are present). For each block size the 95 % percentile width of sample, micro and macro F1 and of the
mean number of labels per patch is reported as a ratio to the width at block 1 (independent resampling).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from benloss.data.encoded import read_patch_names
from benloss.evaluation.blocks import block_ids, block_sizes
from benloss.evaluation.bootstrap import METRICS, bootstrap_metrics, percentile_interval, replicate_weights
from benloss.facts.nomenclature import classes
from benloss.facts.patch_names import GRID_SIDE
from benloss.facts.splits import read_list
from benloss.layout import encoded_array

ROOT = Path(__file__).resolve().parents[1]
METADATA = ROOT / "resources/bigearthnet_v2/metadata.parquet"
V1_TEST = ROOT / "resources/splits/test.csv.bz2"
BLOCKS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 46, GRID_SIDE)
REPORTED = ("f1_samples", "f1_micro", "f1_macro")


def multi_hot(label_lists: pd.Series) -> np.ndarray:
    index = {name: c for c, name in enumerate(classes())}
    out = np.zeros((len(label_lists), len(index)), dtype=bool)
    for n, names in enumerate(label_lists):
        out[n, [index[name] for name in names]] = True
    return out


def real_splits() -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """Per archive: test names, test labels, training labels."""
    metadata = pd.read_parquet(METADATA, columns=["patch_id", "labels", "split", "s2v1_name"])
    train = multi_hot(metadata.loc[metadata["split"] == "train", "labels"])
    test = metadata[metadata["split"] == "test"]
    v1 = metadata.set_index("s2v1_name")["labels"]
    v1_names = [name for name in read_list(V1_TEST) if name in v1.index]
    return {
        "v2.0": (test["patch_id"].tolist(), multi_hot(test["labels"]), train),
        "v1.0": (v1_names, multi_hot(v1.loc[v1_names]), train),
    }


def demo_split(run: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    encoded = run / "encoded"
    labels = {split: np.load(encoded / encoded_array(split, "labels")).astype(bool) for split in ("train", "test")}
    return read_patch_names(encoded, "test"), labels["test"], labels["train"]


def widths(names: list[str], labels: np.ndarray, train: np.ndarray, n_boot: int, seed: int) -> pd.DataFrame:
    frequent = np.zeros(labels.shape, dtype=bool)
    frequent[:, np.argsort(-train.sum(0), kind="stable")[:3]] = True
    rng = np.random.default_rng(seed)
    oracle = np.where(rng.random(labels.shape) < 0.85, labels, ~labels)
    cardinality = labels.sum(1).astype(np.float64)
    rows = []
    for block in BLOCKS:
        ids = block_ids(names, block)
        row = {"block": block, "blocks": len(block_sizes(ids)), "median_patches": float(np.median(block_sizes(ids)))}
        _, replicates = bootstrap_metrics([frequent, oracle], labels, n_boot=n_boot, seed=seed, blocks=ids)
        for m, predictor in enumerate(("frequent", "oracle")):
            for metric in REPORTED:
                low, high = percentile_interval(replicates[:, m, METRICS.index(metric)])
                row[f"{predictor}_{metric}"] = 100 * float(high - low)
        weights = replicate_weights(ids, range(n_boot), seed)
        low, high = percentile_interval(weights @ cardinality / weights.sum(1))
        row["labels_per_patch"] = float(high - low)
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("block")
    measured = [column for column in frame.columns if column not in ("blocks", "median_patches")]
    frame[measured] = frame[measured] / frame.loc[1, measured]
    return frame


def main(argv: list[str] | None = None) -> dict[str, pd.DataFrame]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, help="a finished demo run's results folder, to measure its test split too")
    parser.add_argument("--boot", type=int, default=500, help="bootstrap replicates per block size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resamples and of the noisy oracle")
    parser.add_argument("--quick", action="store_true", help="every 40th test patch and 50 replicates: a smoke test")
    args = parser.parse_args(argv)
    splits = real_splits()
    if args.quick:
        args.boot = 50
        splits = {archive: (names[::40], labels[::40], train) for archive, (names, labels, train) in splits.items()}
    if args.demo:
        splits["demo"] = demo_split(args.demo)
    results = {}
    for archive, (names, labels, train) in splits.items():
        results[archive] = widths(names, labels, train, args.boot, args.seed)
        print(f"\n{archive}: {len(names)} test patches; interval width relative to block 1")
        print(results[archive].round(2).to_markdown())
    return results


if __name__ == "__main__":
    main()
