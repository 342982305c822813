"""Ranking and probability metrics against scikit-learn and against data with repeated rows."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

import benloss
from benloss.errors import InputError
from benloss.evaluation.ranking import (
    RANKING_METRICS,
    auroc,
    average_precision,
    brier_score,
    expected_calibration_error,
    micro_pr_curve,
    ranking_from_block_counts,
    ranking_from_weights,
    ranking_summary,
    reliability_table,
)


def random_case(seed: int, n: int = 120, c: int = 6, ties: bool = False):
    """Scores related to labels; class 0 has no positive and class 1 no negative."""
    rng = np.random.default_rng(seed)
    labels = rng.random((n, c)) < rng.uniform(0.1, 0.5, c)
    labels[:, 0] = False
    labels[:, 1] = True
    scores = rng.normal(size=(n, c)) + labels
    if ties:
        scores = np.round(scores, 1)
    return scores, labels


CASES = [
    pytest.param(seed, ties, id=f"seed{seed}-{'ties' if ties else 'distinct'}") for seed in (0, 1) for ties in (0, 1)
]


@pytest.mark.parametrize(("seed", "ties"), CASES)
def test_per_class_against_sklearn(seed, ties):
    scores, labels = random_case(seed, ties=bool(ties))
    ap, auc = average_precision(scores, labels), auroc(scores, labels)
    assert np.isnan(ap[0]) and np.isnan(auc[0]) and np.isnan(auc[1])
    assert ap[1] == pytest.approx(1.0)
    for c in range(1, scores.shape[1]):
        assert ap[c] == pytest.approx(skm.average_precision_score(labels[:, c], scores[:, c]), rel=1e-12)
    for c in range(2, scores.shape[1]):
        assert auc[c] == pytest.approx(skm.roc_auc_score(labels[:, c], scores[:, c]), rel=1e-12)


@pytest.mark.parametrize(("seed", "ties"), CASES)
def test_summary_against_sklearn(seed, ties):
    scores, labels = random_case(seed, ties=bool(ties))
    with_positive = [c for c in range(scores.shape[1]) if labels[:, c].any()]
    both = [c for c in with_positive if not labels[:, c].all()]
    summary = ranking_summary(scores, labels)
    assert tuple(summary) == RANKING_METRICS
    expected_macro = np.mean([skm.average_precision_score(labels[:, c], scores[:, c]) for c in with_positive])
    assert summary["map_macro"] == pytest.approx(expected_macro, rel=1e-12)
    assert summary["map_micro"] == pytest.approx(
        skm.average_precision_score(labels, scores, average="micro"), rel=1e-12
    )
    assert summary["auroc_macro"] == pytest.approx(skm.roc_auc_score(labels[:, both], scores[:, both]), rel=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_weights_equal_repeated_rows(ties):
    scores, labels = random_case(2, n=80, ties=ties)
    weights = np.random.default_rng(3).integers(0, 4, size=(5, len(scores)))
    expected = [list(ranking_summary(np.repeat(scores, w, 0), np.repeat(labels, w, 0)).values()) for w in weights]
    # Whole-number weights run in float32 (their sums stay exact; ratios carry float32 rounding, ~1e-7).
    np.testing.assert_allclose(ranking_from_weights(scores, labels, weights, chunk=2), expected, rtol=2e-6)
    ones = ranking_from_weights(scores, labels, np.ones((2, len(scores))))
    np.testing.assert_allclose(ones, [list(ranking_summary(scores, labels).values())] * 2, rtol=2e-6)
    fractional = ranking_from_weights(scores, labels, weights + 0.5)  # float64 where weights are not whole
    halves = [list(ranking_summary(np.repeat(scores, 2 * w + 1, 0), np.repeat(labels, 2 * w + 1, 0)).values())
              for w in weights]  # fmt: skip
    np.testing.assert_allclose(fractional, halves, rtol=1e-12)


@pytest.mark.filterwarnings("error")
def test_weights_without_positives_give_nan_for_the_class():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.9]])
    labels = np.array([[1, 0], [0, 1], [0, 0]])
    # class 1 alone has AP ½ and AUROC ½ (one negative above its positive, one below); replicate 0 drops
    # image 1, its only positive, so the macro means are class 0's; replicate 2 has no image at all, and every
    # metric is NaN (without numpy's warning)
    values = ranking_from_weights(scores, labels, [[1, 0, 1], [1, 1, 1], [0, 0, 0]])
    np.testing.assert_allclose(values[0, [0, 2]], [1.0, 1.0])
    np.testing.assert_allclose(values[1, [0, 2]], [0.75, 0.75])
    assert np.isnan(values[2]).all()
    with pytest.raises(InputError, match="weights"):
        ranking_from_weights(scores, labels, [[1, -1, 1]])
    with pytest.raises(InputError, match="weights"):
        ranking_from_weights(scores, labels, [[1, 1]])


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.filterwarnings("error")
def test_block_counts_equal_repeated_rows_of_the_drawn_blocks(ties):
    """The per-block tallies give the metrics of the data with each block's rows repeated as drawn
    (``ranking_summary``, checked against scikit-learn above), including classes a replicate leaves without
    positives or negatives, and a replicate of no image."""
    scores, labels = random_case(4, n=90, ties=ties)
    labels[:, 2] = False
    labels[[7, 50], 2] = True  # two positives: some replicates draw neither
    rng = np.random.default_rng(5)
    blocks = rng.permutation(np.arange(90) % 13)
    counts = rng.integers(0, 3, size=(12, 13)).astype(float)
    counts[-1] = 0
    found = ranking_from_block_counts(scores, labels, blocks, counts, chunk=5)
    for b, drawn in enumerate(counts[:-1]):
        w = drawn[blocks].astype(int)
        expected = ranking_summary(np.repeat(scores, w, 0), np.repeat(labels, w, 0))
        np.testing.assert_allclose(found[b], list(expected.values()), rtol=2e-6)
    assert np.isnan(found[-1]).all()
    np.testing.assert_allclose(found, ranking_from_weights(scores, labels, counts[:, blocks]), rtol=2e-6)
    with pytest.raises(InputError, match="block counts"):
        ranking_from_block_counts(scores, labels, blocks, counts[:, :5])


def test_bad_shapes():
    with pytest.raises(InputError, match="must both be"):
        average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(InputError, match="0/1"):
        auroc(np.zeros((3, 2)), np.full((3, 2), 2))


@pytest.mark.parametrize(("ties", "max_points"), [(False, 25), (True, 1000), (True, 12)])
def test_micro_pr_curve_on_sklearn_curve(ties, max_points):
    scores, labels = random_case(4, ties=ties)
    curve = micro_pr_curve(scores, labels, max_points=max_points)
    precision, recall, thresholds = skm.precision_recall_curve(labels.ravel(), scores.ravel())
    # sklearn's thresholds increase; drop its final (recall 0, precision 1) point and reverse
    reference = pd.DataFrame({"threshold": thresholds, "precision": precision[:-1], "recall": recall[:-1]})[::-1]
    assert list(curve.columns) == ["threshold", "precision", "recall"]
    assert len(curve) <= max_points
    if len(reference) <= max_points:
        assert len(curve) == len(reference)
    else:
        assert len(curve) > max_points // 2  # thinning keeps most of its evenly spaced recall targets
    assert curve["threshold"].is_monotonic_decreasing and curve["threshold"].is_unique
    matched = reference.set_index("threshold").loc[curve["threshold"]]
    np.testing.assert_allclose(curve[["precision", "recall"]], matched, rtol=1e-12)
    np.testing.assert_allclose(curve.iloc[[0, -1]], reference.iloc[[0, -1]], rtol=1e-12)


def test_ece_by_hand():
    probabilities = np.array([[0.1, 0.9], [0.2, 0.8], [0.6, 1.0]])
    labels = np.array([[0, 1], [1, 1], [1, 0]])
    # four bins: [0, .25) holds 0.1, 0.2 (confidence .15, frequency .5); [.5, .75) holds 0.6 (.6 vs 1);
    # [.75, 1] holds 0.9, 0.8, 1.0 (.9 vs 2/3): ECE = (2 × .35 + 1 × .4 + 3 × 7/30) / 6 = 0.3
    assert expected_calibration_error(probabilities, labels, bins=4) == pytest.approx(0.3)
    table = reliability_table(probabilities, labels, bins=4)
    assert table["count"].tolist() == [2, 0, 1, 3]
    assert np.isnan(table.loc[1, "confidence"]) and np.isnan(table.loc[1, "frequency"])
    np.testing.assert_allclose(table["bin_low"], [0, 0.25, 0.5, 0.75])
    # bin edges belong to the bin above them
    assert reliability_table(np.array([[0.25, 0.5]]), np.array([[0, 1]]), bins=4)["count"].tolist() == [0, 1, 1, 0]


def test_reliability_counts_and_brier():
    rng = np.random.default_rng(5)
    probabilities = rng.random((40, 7))
    probabilities[0, :2] = (0.0, 1.0)
    labels = rng.random((40, 7)) < probabilities
    table = reliability_table(probabilities, labels)
    assert len(table) == 15 and table["count"].sum() == probabilities.size
    assert table["bin_high"].iloc[-1] == 1.0
    expected = skm.brier_score_loss(labels.ravel(), probabilities.ravel())
    assert brier_score(probabilities, labels) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        brier_score(probabilities + 0.5, labels)


def test_imports_without_torch_or_sklearn():
    code = "import sys, benloss.evaluation.ranking; assert not {'torch', 'sklearn'} & set(sys.modules), sys.modules"
    src = str(Path(benloss.__file__).parents[1])
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": src})
