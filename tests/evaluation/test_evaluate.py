"""Evaluation, Table 1, Table 2 and Fig. 2 from inputs with known results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm

from benloss.evaluation.evaluate import calibrate, evaluate, evaluate_scores
from benloss.evaluation.metrics import calibrate_sample_f1_thresholds, calibrate_thresholds
from benloss.facts.nomenclature import classes
from benloss.training.config import TrainConfig
from benloss.training.losses import build_loss, sparsemax
from benloss.training.models import KBranchCNN


def constant_model(path: Path, bias: np.ndarray, loss: str = "cel") -> None:
    """A K-Branch CNN whose every weight is zero: its scores are the classifier bias for every image."""
    model = KBranchCNN(width=4).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.classifier.bias.copy_(torch.from_numpy(bias))
    torch.save({"state_dict": model.state_dict(), "config": vars(TrainConfig(loss=loss, width=4))}, path)


def test_evaluate_constant_model_against_sklearn(demo_encoded, tmp_path):
    rng = np.random.default_rng(0)
    bias = rng.normal(size=19).astype(np.float32)
    constant_model(tmp_path / "model.pt", bias)
    val_labels = np.load(demo_encoded / "val_labels.npy")
    np.save(tmp_path / "val_scores.npy", rng.normal(size=val_labels.shape).astype(np.float32))
    result = evaluate(tmp_path / "model.pt", tmp_path / "val_scores.npy", demo_encoded, tmp_path / "out")
    test_labels = np.load(demo_encoded / "test_labels.npy").astype(bool)
    predictions = np.broadcast_to(bias >= 0, test_labels.shape)
    for average in ("samples", "micro", "macro"):
        expected = skm.f1_score(test_labels, predictions, average=average, zero_division=0)
        assert result["own_rule"][f"f1_{average}"] == pytest.approx(expected)
    scores = np.load(tmp_path / "out" / "test_scores.npy")
    np.testing.assert_allclose(scores, np.broadcast_to(bias, scores.shape), atol=1e-6)
    per_class = pd.read_csv(tmp_path / "out" / "per_class.csv", index_col="class")
    assert list(per_class.index) == list(classes())
    np.testing.assert_allclose(per_class["f1"], skm.f1_score(test_labels, predictions, average=None, zero_division=0))
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["test_images"] == len(test_labels)


def scored_labels(seed: int, n: int = 80, c: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Scores with a random per-image offset (what RL and SML never learn) over a signal, and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.random((n, c)) < 0.3
    return rng.normal(size=(n, c)) + 2.0 * labels + rng.normal(scale=5.0, size=(n, 1)), labels


@pytest.mark.parametrize("loss", ["rl", "sml"])
def test_shift_invariant_losses_calibrate_for_sample_f1_on_their_shift_free_score(loss):
    scores, labels = scored_labels(0)
    z = torch.from_numpy(scores)
    shift_free = (z - z.mean(1, keepdim=True) if loss == "rl" else z - sparsemax(z)[1]).numpy()
    thresholds = calibrate(build_loss(loss), scores, labels)
    np.testing.assert_array_equal(thresholds, calibrate_sample_f1_thresholds(shift_free, labels))
    offset = np.random.default_rng(1).normal(scale=100.0, size=(len(scores), 1))
    np.testing.assert_allclose(calibrate(build_loss(loss), scores + offset, labels), thresholds, atol=1e-9)


def test_calibrated_rl_metrics_are_sample_f1_of_the_shift_free_score():
    val, val_labels = scored_labels(2, c=19)  # per-class tables name the 19 classes
    test, test_labels = scored_labels(3, c=19)
    thresholds = calibrate(build_loss("rl"), val, val_labels)
    _, calibrated, _, _ = evaluate_scores("rl", {}, test.astype(np.float32), test_labels, thresholds)
    predicted = test - test.mean(1, keepdims=True) >= thresholds
    expected = skm.f1_score(test_labels, predicted, average="samples", zero_division=0)
    assert calibrated["f1_samples"] == pytest.approx(expected)


def test_other_losses_calibrate_per_class_on_raw_scores():
    scores, labels = scored_labels(4)
    np.testing.assert_array_equal(calibrate(build_loss("cel"), scores, labels), calibrate_thresholds(scores, labels))
