"""Test-split evaluation of one trained model: its own decision rule and validation-calibrated thresholds."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benloss.atomic import atomic_outputs
from benloss.evaluation.metrics import MultiLabelMetrics, calibrate_sample_f1_thresholds, calibrate_thresholds
from benloss.facts.bands import read_band_statistics
from benloss.facts.nomenclature import classes
from benloss.layout import ENCODED_FILES, EVALUATION_FILES
from benloss.training.batches import EncodedSplit, batch_plan, loader, to_device
from benloss.training.losses import MultiLabelLoss, build_loss
from benloss.training.models import BandNormalizer, KBranchCNN
from benloss.training.train import choose_device, load_model

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_scores(
    model: KBranchCNN, encoded: Path, split: str, device: torch.device, batch_size: int = 256
) -> np.ndarray:
    """Raw scores (N, C) of ``model`` on one split, in the encoded row order."""
    data = EncodedSplit(encoded, split)
    normalizer = BandNormalizer(read_band_statistics(Path(encoded) / ENCODED_FILES["band_statistics"])).to(device)
    plan = batch_plan(data.n_images, batch_size, False, 0, 0)
    scores = [
        model(*normalizer(to_device(batch, device))).float().cpu().numpy()
        for batch in tqdm(loader(data, plan, 0, False), total=len(plan), desc=f"scores {split}", mininterval=5)
    ]
    return np.concatenate(scores) if scores else np.zeros((0, len(classes())), np.float32)


def calibrate(loss: MultiLabelLoss, val_scores: np.ndarray, val_labels: np.ndarray) -> np.ndarray:
    """Per-class thresholds for ``loss.predict``, from validation scores.

    Per class for per-class F1 on raw scores; for a shift-invariant loss, per class on its shift-free score
    and for sample F1 (the reported metric), since raw scores carry a per-image offset it never learnt.
    """
    if loss.shift_free_score is None:
        return calibrate_thresholds(val_scores, val_labels)
    shift_free = loss.calibration_scores(torch.from_numpy(np.asarray(val_scores))).double().numpy()
    return calibrate_sample_f1_thresholds(shift_free, val_labels)


def calibration_method(loss: MultiLabelLoss) -> str:
    """How ``calibrate`` chose the thresholds, for ``metrics.json``."""
    if loss.shift_free_score is None:
        return "per class, for per-class F1, on raw scores"
    return f"per class, for sample F1, on {loss.shift_free_score}"


def evaluate_scores(
    loss_name: str, loss_params: dict, test_scores: np.ndarray, test_labels: np.ndarray, thresholds: np.ndarray
) -> tuple[dict, dict, object, object]:
    """Metrics of the loss's own rule and of calibrated thresholds, plus both per-class tables."""
    loss = build_loss(loss_name, class_frequencies=np.ones(test_labels.shape[1]), **loss_params)
    scores = torch.from_numpy(test_scores)
    own, calibrated = MultiLabelMetrics(test_labels.shape[1]), MultiLabelMetrics(test_labels.shape[1])
    own.update(loss.predict(scores), test_labels, test_scores)
    calibrated.update(loss.predict(scores, torch.from_numpy(thresholds)), test_labels, test_scores)
    return own.compute(), calibrated.compute(), own.per_class(classes()), calibrated.per_class(classes())


def evaluate(
    model_path: Path, val_scores: Path, encoded: Path, outdir: Path, threads: int = 1, device: str = "auto"
) -> dict:
    """Write ``metrics.json``, ``per_class.csv`` and ``test_scores.npy`` for one trained model."""
    torch.set_num_threads(max(1, threads))
    target = choose_device(device)
    model, config = load_model(model_path, target)
    val_labels = EncodedSplit(encoded, "val").labels
    test_labels = EncodedSplit(encoded, "test").labels
    loss = build_loss(config.loss, class_frequencies=np.ones(val_labels.shape[1]), **config.loss_params)
    thresholds = calibrate(loss, np.load(val_scores), val_labels)
    test_scores = predict_scores(model, encoded, "test", target)
    own, calibrated, per_class, per_class_calibrated = evaluate_scores(
        config.loss, config.loss_params, test_scores, test_labels, thresholds
    )
    per_class = per_class.assign(f1_calibrated=per_class_calibrated["f1"].to_numpy(), threshold=thresholds)
    result = {
        "loss": config.loss,
        "seed": config.seed,
        "test_images": len(test_labels),
        "own_rule": own,
        "calibrated": calibrated,
        "calibration": calibration_method(loss),
        "thresholds": [None if np.isinf(t) else float(t) for t in thresholds],
    }
    outdir = Path(outdir)
    with atomic_outputs(*(outdir / name for name in EVALUATION_FILES.values())) as (m, p, s):
        m.write_text(json.dumps(result, indent=2) + "\n")
        per_class.to_csv(p)
        np.save(s, test_scores.astype(np.float32))
    log.info("%s seed %d: test F1 (samples) %.4f, calibrated %.4f", config.loss, config.seed, own["f1_samples"],
             calibrated["f1_samples"])  # fmt: skip
    return result
