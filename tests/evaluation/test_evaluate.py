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
from benloss.facts.loss_catalog import LOSS_IDS, loss_info
from benloss.facts.nomenclature import classes
from benloss.training.config import TrainConfig
from benloss.training.losses import build_rule, sparsemax
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
    for average, zero_division in (("samples", 0), ("micro", 0), ("macro", np.nan)):
        expected = skm.f1_score(test_labels, predictions, average=average, zero_division=zero_division)
        assert result["own_rule"][f"f1_{average}"] == pytest.approx(expected)
    scores = np.load(tmp_path / "out" / "test_scores.npy")
    np.testing.assert_allclose(scores, np.broadcast_to(bias, scores.shape), atol=1e-6)
    per_class = pd.read_csv(tmp_path / "out" / "per_class.csv", index_col="class")
    assert list(per_class.index) == list(classes())
    expected = skm.f1_score(test_labels, predictions, average=None, zero_division=np.nan)
    np.testing.assert_allclose(per_class["f1"], expected)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["test_images"] == len(test_labels)


def scored_labels(seed: int, n: int = 80, c: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Scores with a random per-image offset (what RL and SML never learn) over a signal, and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.random((n, c)) < 0.3
    return rng.normal(size=(n, c)) + 2.0 * labels + rng.normal(scale=5.0, size=(n, 1)), labels


@pytest.mark.parametrize("loss", LOSS_IDS)
def test_every_loss_gets_the_same_two_calibrators_on_its_ranking_score(loss):
    scores, labels = scored_labels(0)
    rule = build_rule(loss, labels.shape[1])
    z = torch.from_numpy(scores)
    ranking = {"rl": z - z.mean(1, keepdim=True), "sml": z - sparsemax(z)[1]}.get(loss, z).numpy()
    thresholds = calibrate(rule, scores, labels)
    np.testing.assert_array_equal(thresholds["sample"], calibrate_sample_f1_thresholds(ranking, labels))
    np.testing.assert_array_equal(thresholds["per_class"], calibrate_thresholds(ranking, labels))
    if loss in ("rl", "sml"):  # their ranking score ignores the per-image offset they never learn
        offset = np.random.default_rng(1).normal(scale=100.0, size=(len(scores), 1))
        shifted = calibrate(rule, scores + offset, labels)
        for key in thresholds:
            np.testing.assert_allclose(shifted[key], thresholds[key], atol=1e-9)


def test_every_loss_gets_every_metric_group_and_probabilities_where_they_apply():
    val, val_labels = scored_labels(2, c=19)
    test, test_labels = scored_labels(3, c=19)
    for loss in LOSS_IDS:
        rule = build_rule(loss, 19)
        rule.fit_own_rule(torch.from_numpy(val), torch.from_numpy(val_labels))
        metrics, _ = evaluate_scores(rule, test.astype(np.float32), test_labels, calibrate(rule, val, val_labels))
        assert set(metrics) == {"own_rule", "calibrated", "calibrated_per_class", "ranking", "probability"}
        assert (metrics["probability"] is None) == (not loss_info(loss).sigmoid_probability), loss


def test_calibrated_metrics_and_ranking_metrics_against_sklearn():
    val, val_labels = scored_labels(2, c=19)  # per-class tables name the 19 classes
    test, test_labels = scored_labels(3, c=19)
    rule = build_rule("rl", 19)
    rule.fit_own_rule(torch.from_numpy(val), torch.from_numpy(val_labels))
    thresholds = calibrate(rule, val, val_labels)
    metrics, per_class = evaluate_scores(rule, test.astype(np.float32), test_labels, thresholds)
    shift_free = test - test.mean(1, keepdims=True)
    predicted = shift_free >= thresholds["sample"]
    expected = skm.f1_score(test_labels, predicted, average="samples", zero_division=0)
    assert metrics["calibrated"]["f1_samples"] == pytest.approx(expected)
    per_class_predicted = shift_free >= thresholds["per_class"]
    assert metrics["calibrated_per_class"]["f1_macro"] == pytest.approx(
        skm.f1_score(test_labels, per_class_predicted, average="macro", zero_division=np.nan)
    )
    own = shift_free >= rule.own_rule["threshold"]
    assert metrics["own_rule"]["f1_samples"] == pytest.approx(
        skm.f1_score(test_labels, own, average="samples", zero_division=0)
    )
    present = test_labels.any(0)
    ap = [skm.average_precision_score(test_labels[:, c], shift_free[:, c]) for c in np.flatnonzero(present)]
    assert metrics["ranking"]["map_macro"] == pytest.approx(np.mean(ap))
    np.testing.assert_allclose(per_class["ap"].to_numpy()[present], ap)
    assert metrics["ranking"]["map_micro"] == pytest.approx(
        skm.average_precision_score(test_labels, shift_free, average="micro")
    )
