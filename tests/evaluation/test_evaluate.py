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
from benloss.facts.loss_catalog import PAPER_LOSS_IDS, loss_info
from benloss.facts.nomenclature import classes
from benloss.report.figures import learning_curves, pairwise_matrix, time_curves, write_figures
from benloss.report.tables import agreement_summary, epochs_to_fraction, marks, paper_marks, write_tables
from benloss.training.config import TrainConfig
from benloss.training.losses import build_loss, sparsemax
from benloss.training.models import KBranchCNN

from ..support import histories_of, table_inputs, write_fake_run


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


def test_table1_means_and_stds(tmp_path):
    truth = write_fake_run(tmp_path)
    tables = write_tables(*table_inputs(tmp_path), tmp_path / "class_counts.csv", tmp_path / "tables", demo=True)
    long = tables["table1"]
    f1 = long[long["metric"] == "F1"].set_index("loss")
    assert list(f1.index) == ["CEL", "FL", "W-CEL", "HAL", "HL", "RL", "SML"]
    for i, loss in enumerate(PAPER_LOSS_IDS):
        values = [100 * truth[(loss, s)] for s in (0, 1)]
        row = f1.iloc[i]
        assert row["mean"] == pytest.approx(np.mean(values)) and row["std"] == pytest.approx(np.std(values, ddof=1))
    text = (tmp_path / "tables" / "table1.md").read_text()
    assert "DEMO" in text and "60.5 ± 0.7" in text  # SML: 60 and 61 %
    assert "69.9" in (tmp_path / "tables" / "table1_paper.csv").read_text()
    assert "\\begin{tabular}" in (tmp_path / "tables" / "table1.tex").read_text()
    assert long["ci_low"].isna().all()  # no bootstrap intervals given


def test_table1_takes_the_bootstrap_intervals_of_each_row(tmp_path):
    write_fake_run(tmp_path)
    rows = [{"rule": rule, "loss": info.abbreviation, "metric": metric, "estimate": 0.0, "ci_low": 10.0 * i + k,
             "ci_high": 10.0 * i + k + 5, "test_se": 1.5, "seed_std": 0.7, "seeds": 2, "dominant_spread": "test images"}
            for i, info in enumerate(map(loss_info, PAPER_LOSS_IDS)) for rule in ("own", "calibrated")
            for k, metric in enumerate(("precision_samples", "f1_samples", "f1_micro", "precision_macro"))
            ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "intervals.csv", index=False)
    long = write_tables(
        *table_inputs(tmp_path), tmp_path / "class_counts.csv", tmp_path / "out", intervals=tmp_path / "intervals.csv"
    )["table1"]
    sml = long[long["loss"] == "SML"].set_index("metric")
    assert sml.loc["P", "ci_low"] == 60 and sml.loc["F1", "ci_high"] == 66 and sml.loc["F1 micro", "ci_low"] == 62
    assert sml.loc["P macro", "ci_low"] == 63 and sml.loc["F1 samples, calibrated thresholds", "ci_low"] == 61
    assert np.isnan(sml.loc["R micro", "ci_low"]) and sml.loc["F1", "dominant_spread"] == "test images"
    assert "60.5 ± 0.7 [61.0, 66.0]" in (tmp_path / "out" / "table1.md").read_text()


def test_table2_numbers_and_marks(tmp_path):
    write_fake_run(tmp_path)
    table2 = write_tables(*table_inputs(tmp_path), tmp_path / "class_counts.csv", tmp_path / "tables")["table2"]
    assert table2.loc["SML", "test_f1"] == pytest.approx(0.605)
    assert list(table2["test_f1_mark"]) == ["L", "L", "M", "M", "H", "H", "H"]
    # Curves reach their final value at epoch i + 1, so 90 % is first reached at epoch ceil(0.9 (i + 1)).
    assert list(table2["epochs_to_90"]) == [1, 2, 3, 4, 5, 5, 5]
    assert table2.loc["RL", "differentiability_mark"] == "L" and table2.loc["FL", "convexity_mark"] == "L"
    # Rare classes are the last six by training count: per-class F1 rises linearly to the loss's F1.
    rare = np.linspace(0, 0.605, 19)[13:].mean()
    assert table2.loc["SML", "rare_f1"] == pytest.approx(rare)
    # Loss i trains 1 + i seconds per epoch and reaches 90 % at epoch ceil(0.9 (i + 1)), capped at 5.
    assert list(table2["seconds_to_90"]) == [(1 + i) * min(np.ceil(0.9 * (i + 1)), 5) for i in range(7)]


def test_table2_sets_the_paper_marks_beside_the_measured_ones(tmp_path):
    write_fake_run(tmp_path)
    table2 = write_tables(*table_inputs(tmp_path), tmp_path / "class_counts.csv", tmp_path / "tables")["table2"]
    assert list(table2["paper_overall_accuracy"]) == ["L", "L", "M", "M", "M", "L", "H"]
    assert list(table2["paper_convexity_differentiability"]) == ["M", "M", "M", "NA", "H", "NA", "M"]
    # Measured overall-accuracy marks are L L M M H H H (test_f1 rises with the loss's position).
    assert list(table2["agree_overall_accuracy"]) == ["yes", "yes", "yes", "yes", "no", "no", "yes"]
    # CEL convex and differentiable (H) against the paper's M; HAL and RL are NA in the paper, so not compared.
    assert table2.loc["CEL", "agree_convexity_differentiability"] == "no"
    assert table2.loc["HL", "agree_convexity_differentiability"] == "yes"
    assert (
        table2.loc["HAL", "agree_convexity_differentiability"]
        == "—"
        == table2.loc["RL", "agree_convexity_differentiability"]
    )
    summary = agreement_summary(table2).set_index("criterion")
    assert summary.loc["overall_accuracy", "agree"] == 5 and summary.loc["overall_accuracy", "compared"] == 7
    assert summary.loc["convexity_differentiability", "compared"] == 5
    saved = pd.read_csv(tmp_path / "tables" / "table2.csv", index_col="loss")
    assert saved.loc["SML", "paper_learning_efficiency"] == "H"


def test_a_loss_the_paper_did_not_study_has_no_paper_marks():
    assert set(paper_marks("not-in-the-paper").values()) == {"—"}
    assert paper_marks("rl")["paper_learning_efficiency"] == "H"


def test_marks_by_thirds():
    values = pd.Series([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    assert list(marks(values, True)) == ["H", "H", "H", "M", "M", "L", "L"]
    assert list(marks(values, False)) == ["L", "L", "M", "M", "H", "H", "H"]
    assert epochs_to_fraction(np.array([0.1, 0.5, 0.95, 1.0])) == 3


def test_figures_plot_one_curve_per_loss_with_the_data(tmp_path):
    write_fake_run(tmp_path)
    from benloss.evaluation.results import histories

    figure = learning_curves(histories(histories_of(tmp_path)))
    f1_axis = figure.axes[0]
    lines = {line.get_label(): line for line in f1_axis.get_lines()}
    assert list(lines) == ["CEL", "FL", "W-CEL", "HAL", "HL", "RL", "SML"]
    expected = np.mean([0.6 * np.minimum(np.arange(1, 6) / 7, 1), 0.61 * np.minimum(np.arange(1, 6) / 7, 1)], axis=0)
    np.testing.assert_allclose(lines["SML"].get_ydata(), expected)
    assert len(f1_axis.collections) == 7  # a ± std band per loss, two seeds each
    assert len({line.get_color() for line in lines.values()}) == 7
    write_figures(histories_of(tmp_path), tmp_path / "class_counts.csv", tmp_path / "figures")
    assert (tmp_path / "figures" / "f1_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "figures" / "f1_curves.pdf").read_bytes()[:5] == b"%PDF-"
    assert (tmp_path / "figures" / "class_counts.png").stat().st_size > 10_000


def test_time_curves_put_validation_f1_against_summed_training_seconds(tmp_path):
    write_fake_run(tmp_path)
    from benloss.evaluation.results import histories

    lines = {line.get_label(): line for line in time_curves(histories(histories_of(tmp_path))).axes[0].get_lines()}
    # SML (position 6) trains 7 s per epoch; its curve is 0.605 · min(epoch / 7, 1) averaged over seeds.
    np.testing.assert_allclose(lines["SML"].get_xdata(), 7.0 * np.arange(1, 6))
    np.testing.assert_allclose(lines["SML"].get_ydata(), 0.605 * np.arange(1, 6) / 7)


def test_pairwise_matrix_is_antisymmetric_and_stars_significant_cells(tmp_path):
    pairwise = pd.DataFrame(
        {"metric": "F1 samples", "loss_a": ["CEL", "CEL", "SML"], "loss_b": ["SML", "RL", "RL"],
         "difference": [-2.5, 1.0, 3.5], "ci_low": 0.0, "ci_high": 0.0, "p_value": 0.01, "p_holm": [0.01, 0.3, 0.04]}
    )  # fmt: skip
    axis = pairwise_matrix(pairwise).axes[0]
    matrix = axis.get_images()[0].get_array()
    assert matrix[1, 0] == 2.5 and matrix[0, 1] == -2.5 and matrix.mask[2, 2]  # the diagonal is blank
    texts = {text.get_text() for text in axis.texts}
    assert {"-2.5*", "+2.5*", "+1.0", "-1.0", "+3.5*", "-3.5*"} == texts
    pairwise.to_csv(tmp_path / "pairwise.csv", index=False)
    write_fake_run(tmp_path)
    write_figures(
        histories_of(tmp_path),
        tmp_path / "class_counts.csv",
        tmp_path / "figures",
        pairwise=tmp_path / "pairwise.csv",
    )
    for name in ("pairwise_f1.png", "f1_time.png"):
        assert (tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
