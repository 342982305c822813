"""Before/after of issue 18's departures from the official K-Branch training, on the demo's encoded data.

    python benchmarks/departures.py --encoded results/demo/encoded --class-counts results/demo/labels/class_counts.csv

Each item trains the demo model (config/config.yaml's width, batch size and learning rate) with the old and
the new choice, for several seeds, and records test sample F1, recall and precision (the loss's own rule and
calibrated thresholds) per loss; one CSV row per trained model, appended as each finishes:

* ``weight_decay``: 2e-5 on every kernel (before) against none (after), all seven losses;
* ``bn_grid``: 2×2 convolutions padded symmetrically and cropped after BatchNorm and ReLU (before) against
  TF's bottom/right padding, so BatchNorm sees TF's 20×20 grid (after);
* ``wcel``: both terms weighted (before) against the positive term only (after);
* ``calibration``: RL and SML thresholds per class for per-class F1 on raw scores (before) against one
  threshold for sample F1 on the shift-free score (after), on the same models.

Every "after" setting is the new default, so the "after" models are shared between items.
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import Tensor, nn

from benloss.evaluation.evaluate import calibrate, evaluate_scores, predict_scores
from benloss.evaluation.metrics import MultiLabelMetrics, calibrate_thresholds
from benloss.facts.loss_catalog import LOSS_IDS
from benloss.training import models
from benloss.training.batches import EncodedSplit
from benloss.training.config import TrainConfig
from benloss.training.losses import build_rule
from benloss.training.train import Trainer, load_model

COLUMNS = ("item", "variant", "loss", "seed", "epochs", "f1_samples", "recall_samples", "precision_samples",
           "calibrated_f1_samples", "calibrated_recall_samples", "calibrated_precision_samples", "seconds")  # fmt: skip
ITEMS = ("calibration", "wcel", "bn_grid", "weight_decay")
AFTER = {"weight_decay": 0.0, "bn_grid": "tf", "weighting": "positive"}


class _CropFirstRowAndColumn(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x[..., 1:, 1:]


def _pad_then_crop_block(in_channels: int, out_channels: int, kernel: int) -> list[tuple[str, nn.Module]]:
    """The replaced block: symmetric padding, BatchNorm on the 21×21 grid, then the crop to 20×20."""
    layers = [
        ("conv", nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)),
        ("bn", nn.BatchNorm2d(out_channels, eps=models.BN_EPS, momentum=models.BN_MOMENTUM)),
        ("relu", nn.ReLU()),
    ]
    return [*layers, ("crop", _CropFirstRowAndColumn())] if kernel % 2 == 0 else layers


@contextmanager
def bn_grid(variant: str) -> Iterator[None]:
    if variant == "tf":
        yield
        return
    with mock.patch.object(models, "conv_block", _pad_then_crop_block):
        yield


def _metrics(predictions: np.ndarray | Tensor, labels: np.ndarray, prefix: str = "") -> dict:
    metrics = MultiLabelMetrics(labels.shape[1])
    metrics.update(predictions, labels)
    result = metrics.compute()
    return {f"{prefix}{k}_samples": result[f"{k}_samples"] for k in ("f1", "recall", "precision")}


class Runner:
    """Trains each (setting, loss, seed) once and caches its validation and test scores."""

    def __init__(
        self, encoded: Path, class_counts: Path, cache_dir: Path, epochs: int, width: int, batch_size: int, lr: float
    ) -> None:
        self.encoded, self.class_counts = encoded, class_counts
        self.base = {"epochs": epochs, "width": width, "batch_size": batch_size, "lr": lr}
        self.cache: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
        self.cache_dir = cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.val_labels = EncodedSplit(encoded, "val").labels
        self.test_labels = EncodedSplit(encoded, "test").labels

    def scores(self, loss: str, seed: int, **setting) -> tuple[np.ndarray, np.ndarray, float]:
        """Validation and test scores of one trained model, and its training time; kept in ``cache_dir``."""
        setting = AFTER | setting
        key = "_".join(f"{v}" for v in (loss, seed, *self.base.values(), *(setting[k] for k in sorted(setting))))
        path = self.cache_dir / f"{key}.npz"
        if key not in self.cache and path.exists():
            with np.load(path) as stored:
                self.cache[key] = (stored["val"], stored["test"], float(stored["seconds"]))
        if key not in self.cache:
            params = {"weighting": setting["weighting"]} if loss == "wcel" else {}
            config = TrainConfig(loss=loss, seed=seed, weight_decay=setting["weight_decay"], loss_params=params,
                                 device="cpu", **self.base)  # fmt: skip
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as out, bn_grid(setting["bn_grid"]):
                Trainer(config, self.encoded, self.class_counts, Path(out)).run()
                val = np.load(Path(out) / "val_scores.npy")
                model, _ = load_model(Path(out) / "model.pt")
                test = predict_scores(model, self.encoded, "test", torch.device("cpu"))
            self.cache[key] = (val, test, time.perf_counter() - started)
            np.savez(path, val=val, test=test, seconds=self.cache[key][2])
        return self.cache[key]

    def row(self, item: str, variant: str, loss: str, seed: int, **setting) -> dict:
        val, test, seconds = self.scores(loss, seed, **setting)
        params = {"weighting": (AFTER | setting)["weighting"]} if loss == "wcel" else {}
        metrics = self.metrics(loss, params, val, test)
        own, calibrated = metrics["own_rule"], metrics["calibrated"]
        return {"item": item, "variant": variant, "loss": loss, "seed": seed, "epochs": self.base["epochs"],
                **{f"{k}_samples": own[f"{k}_samples"] for k in ("f1", "recall", "precision")},
                **{f"calibrated_{k}_samples": calibrated[f"{k}_samples"] for k in ("f1", "recall", "precision")},
                "seconds": seconds}  # fmt: skip

    def metrics(self, loss: str, params: dict, val: np.ndarray, test: np.ndarray) -> dict:
        """Test metrics of one model as ``benloss evaluate`` computes them (own rule fitted on validation)."""
        rule = build_rule(loss, val.shape[1], **params)
        rule.fit_own_rule(torch.from_numpy(val), torch.from_numpy(self.val_labels))
        return evaluate_scores(rule, test, self.test_labels, calibrate(rule, val, self.val_labels))[0]

    def raw_per_class_row(self, loss: str, seed: int) -> dict:
        """The old calibration: per-class thresholds for per-class F1 on raw scores."""
        val, test, seconds = self.scores(loss, seed)
        params = {"weighting": AFTER["weighting"]} if loss == "wcel" else {}
        own = self.metrics(loss, params, val, test)["own_rule"]
        thresholds = calibrate_thresholds(val, self.val_labels)
        return {"item": "calibration", "variant": "per-class F1, raw scores", "loss": loss, "seed": seed,
                "epochs": self.base["epochs"],
                **{f"{k}_samples": own[f"{k}_samples"] for k in ("f1", "recall", "precision")},
                **_metrics(test >= thresholds, self.test_labels, "calibrated_"), "seconds": seconds}  # fmt: skip


def plan(
    items: list[str], seeds: list[int], losses: list[str], bn_losses: list[str]
) -> Iterator[tuple[str, str, str, int, dict]]:
    """(item, variant, loss, seed, setting), seed by seed, so an interrupted run has every item for its first seeds."""
    variants = {
        "calibration": [(loss, variant, setting) for loss in ("rl", "sml") for variant, setting in
                        (("sample F1, shift-free score", {}), ("per-class F1, raw scores", {"raw": True}))],
        "wcel": [("wcel", "positive", {}), ("wcel", "both", {"weighting": "both"})],
        "bn_grid": [(loss, variant, setting) for loss in bn_losses for variant, setting in
                    (("tf 20x20", {}), ("pad-crop 21x21", {"bn_grid": "pad-crop"}))],
        "weight_decay": [(loss, variant, setting) for loss in losses for variant, setting in
                         (("0", {}), ("2e-5", {"weight_decay": 2e-5}))],
    }  # fmt: skip
    for seed in seeds:
        for item in items:
            for loss, variant, setting in variants[item]:
                yield item, variant, loss, seed, dict(setting)


def summary(path: Path) -> str:
    """Markdown table of a results CSV: mean ± standard deviation over seeds per item, loss and variant."""
    import pandas as pd

    rows = pd.read_csv(path, dtype={"variant": str})
    rows = rows.drop_duplicates(["item", "variant", "loss", "seed", "epochs"], keep="last")
    metrics = ["f1_samples", "recall_samples", "calibrated_f1_samples", "calibrated_recall_samples"]
    grouped = rows.groupby(["item", "loss", "variant", "epochs"], sort=False)[metrics]
    mean, std, count = grouped.mean(), grouped.std(), grouped.size()
    lines = ["| item | loss | variant | epochs | seeds | F1 | recall | calibrated F1 | calibrated recall |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for key in mean.index:
        cells = [f"{100 * mean.loc[key, m]:.1f} ± {100 * std.loc[key, m]:.1f}" if count[key] > 1
                 else f"{100 * mean.loc[key, m]:.1f}" for m in metrics]  # fmt: skip
        lines.append("| " + " | ".join([*map(str, key), str(count[key]), *cells]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoded", type=Path, required=True, help="an encoded demo (results/demo/encoded)")
    parser.add_argument("--class-counts", type=Path, required=True, help="its labels/class_counts.csv")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/departures.csv"), help="CSV, appended")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per model (the demo trains 8)")
    parser.add_argument("--width", type=int, default=64, help="model width (the demo's 64)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (the demo's 16)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (the demo's 1e-3)")
    parser.add_argument("--items", nargs="+", default=list(ITEMS), choices=ITEMS, help="items to measure, in order")
    parser.add_argument(
        "--losses", nargs="+", default=list(LOSS_IDS), choices=LOSS_IDS, help="losses of the weight-decay item"
    )
    parser.add_argument("--bn-losses", nargs="+", default=["cel"], help="losses of the BatchNorm-grid item")
    parser.add_argument("--cache", type=Path, default=None, help="trained models' scores (default: --out, .cache)")
    parser.add_argument("--summary", action="store_true", help="only print the table of --out's rows and stop")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(args.out))
        return
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    cache = args.cache or args.out.with_suffix(".cache")
    runner = Runner(args.encoded, args.class_counts, cache, args.epochs, args.width, args.batch_size, args.lr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new_file = not args.out.exists()
    with args.out.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        for item, variant, loss, seed, setting in plan(args.items, args.seeds, args.losses, args.bn_losses):
            if setting.pop("raw", False):
                row = runner.raw_per_class_row(loss, seed)
            else:
                row = runner.row(item, variant, loss, seed, **setting)
            writer.writerow(row)
            handle.flush()
            print(f"{item:12s} {variant:28s} {loss:4s} seed {seed}: F1 {row['f1_samples']:.4f} "
                  f"recall {row['recall_samples']:.4f}, calibrated F1 {row['calibrated_f1_samples']:.4f} "
                  f"({row['seconds']:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
