"""Test-split evaluation of one trained model: its own decision rule, the two validation calibrators that every
loss gets, threshold-free metrics on the score it ranks by, and the calibration of σ(z) where it is a probability."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from benloss.atomic import atomic_outputs
from benloss.evaluation.metrics import (
    CALIBRATION,
    MultiLabelMetrics,
    calibrate_sample_f1_thresholds,
    calibrate_thresholds,
)
from benloss.evaluation.ranking import (
    auroc,
    average_precision,
    brier_score,
    expected_calibration_error,
    micro_pr_curve,
    ranking_summary,
    reliability_table,
)
from benloss.facts.bands import read_band_statistics
from benloss.facts.nomenclature import classes
from benloss.layout import ENCODED_FILES, EVALUATION_FILES
from benloss.training.batches import EncodedSplit, batch_plan, loader, to_device
from benloss.training.losses import MultiLabelLoss, build_rule
from benloss.training.models import BandNormalizer, KBranchCNN
from benloss.training.train import choose_device, load_model, load_own_rule

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


def calibrate(loss: MultiLabelLoss, val_scores: np.ndarray, val_labels: np.ndarray) -> dict[str, np.ndarray]:
    """Both calibrators' thresholds, on ``loss.ranking_scores`` of the validation scores: ``per_class`` (each
    class's F1) and ``sample`` (sample F1)."""
    ranking = ranking_scores(loss, val_scores)
    return {
        "per_class": calibrate_thresholds(ranking, val_labels),
        "sample": calibrate_sample_f1_thresholds(ranking, val_labels),
    }


def ranking_scores(loss: MultiLabelLoss, scores: np.ndarray) -> np.ndarray:
    """The scores ``loss`` ranks by (raw, or its shift-free score), float64."""
    return loss.ranking_scores(torch.from_numpy(np.asarray(scores))).double().numpy()


def score_name(loss: MultiLabelLoss) -> str:
    return loss.shift_free_score or "z"


def evaluate_scores(
    loss: MultiLabelLoss, test_scores: np.ndarray, test_labels: np.ndarray, thresholds: dict[str, np.ndarray]
) -> tuple[dict, pd.DataFrame]:
    """Every test metric of one model's scores: the own rule, both calibrators, the threshold-free metrics on its
    ranking score and, where σ(z) is a probability, its calibration; plus the per-class table."""
    scores = torch.from_numpy(test_scores)
    n_classes = test_labels.shape[1]
    rules = {"own_rule": loss.predict(scores)}
    rules |= {"calibrated": loss.predict(scores, torch.from_numpy(thresholds["sample"]))}
    rules |= {"calibrated_per_class": loss.predict(scores, torch.from_numpy(thresholds["per_class"]))}
    result, tables = {}, {}
    for name, predictions in rules.items():
        metrics = MultiLabelMetrics(n_classes)
        metrics.update(predictions, test_labels, test_scores)
        result[name], tables[name] = metrics.compute(), metrics.per_class(classes())
    ranking = ranking_scores(loss, test_scores)
    result["ranking"] = ranking_summary(ranking, test_labels)
    result["probability"] = None
    if loss.info.sigmoid_probability:
        probabilities = 1 / (1 + np.exp(-test_scores.astype(np.float64)))
        result["probability"] = {"ece": expected_calibration_error(probabilities, test_labels),
                                 "brier": brier_score(probabilities, test_labels)}  # fmt: skip
    per_class = tables["own_rule"].assign(
        f1_calibrated=tables["calibrated_per_class"]["f1"].to_numpy(), threshold=thresholds["per_class"],
        ap=average_precision(ranking, test_labels), auroc=auroc(ranking, test_labels),
    )  # fmt: skip
    return result, per_class


def curves(loss: MultiLabelLoss, test_scores: np.ndarray, test_labels: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The micro precision–recall curve on the ranking score, and the reliability table of σ(z) (header only
    where σ(z) is no probability)."""
    pr = micro_pr_curve(ranking_scores(loss, test_scores), test_labels)
    probabilities = 1 / (1 + np.exp(-test_scores.astype(np.float64)))
    reliability = reliability_table(probabilities, test_labels)
    return pr, reliability if loss.info.sigmoid_probability else reliability.iloc[:0]


def _finite(thresholds: np.ndarray) -> list[float | None]:
    return [None if np.isinf(t) else float(t) for t in thresholds]


def evaluate(
    model_path: Path, val_scores: Path, encoded: Path, outdir: Path, threads: int = 1, device: str = "auto"
) -> dict:
    """Write the evaluation files of one trained model (``benloss.layout.EVALUATION_FILES``)."""
    torch.set_num_threads(max(1, threads))
    target = choose_device(device)
    model, config = load_model(model_path, target)
    val_labels = EncodedSplit(encoded, "val").labels
    test_labels = EncodedSplit(encoded, "test").labels
    loss = build_rule(config.loss, val_labels.shape[1], load_own_rule(model_path), **config.loss_params)
    thresholds = calibrate(loss, np.load(val_scores), val_labels)
    test_scores = predict_scores(model, encoded, "test", target)
    metrics, per_class = evaluate_scores(loss, test_scores, test_labels, thresholds)
    pr, reliability = curves(loss, test_scores, test_labels)
    result = {
        "loss": config.loss,
        "seed": config.seed,
        "test_images": len(test_labels),
        "decision_rule": loss.info.decision_rule,
        "own_rule_parameters": loss.own_rule,
        "ranking_score": score_name(loss),
        "calibration": CALIBRATION,
        **metrics,
        "thresholds": _finite(thresholds["sample"]),
        "thresholds_per_class": _finite(thresholds["per_class"]),
    }
    outdir = Path(outdir)
    with atomic_outputs(*(outdir / name for name in EVALUATION_FILES.values())) as (m, p, s, c, r):
        m.write_text(json.dumps(result, indent=2) + "\n")
        per_class.to_csv(p)
        np.save(s, test_scores.astype(np.float32))
        pr.to_csv(c, index=False)
        reliability.to_csv(r, index=False)
    log.info("%s seed %d: test F1 (samples) %.4f, calibrated %.4f, macro mAP %.4f", config.loss, config.seed,
             metrics["own_rule"]["f1_samples"], metrics["calibrated"]["f1_samples"],
             metrics["ranking"]["map_macro"])  # fmt: skip
    return result
