"""The metrics against scikit-learn, computed batch by batch: images without predictions or positives score 0
(``zero_division=0``), classes without them are undefined and left out of macro averages (``zero_division=np.nan``)."""

import numpy as np
import pytest
from sklearn import metrics as skm

from benloss.evaluation.metrics import (
    MultiLabelMetrics,
    calibrate_sample_f1_threshold,
    calibrate_sample_f1_thresholds,
    calibrate_thresholds,
)


def random_case(seed: int, n: int = 157, c: int = 7, ties: bool = False):
    rng = np.random.default_rng(seed)
    true = rng.random((n, c)) < rng.uniform(0.1, 0.5, c)
    true[:3] = False  # images without labels
    true[3] = True  # an image with every label
    scores = rng.normal(size=(n, c)) + 1.5 * true
    if ties:
        scores = np.round(scores)
    pred = scores > 0.5
    pred[5:8] = False  # images without predictions
    pred[:, -1] = False  # a class never predicted
    return true, pred, scores


def accumulate(true, pred, scores, batch=40):
    metrics = MultiLabelMetrics(true.shape[1])
    for start in range(0, len(true), batch):
        s = slice(start, start + batch)
        metrics.update(pred[s], true[s], scores[s])
    return metrics


ZERO_DIVISION = {"samples": 0.0, "micro": 0.0, "macro": np.nan}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_averaged_scores_match_sklearn(seed):
    true, pred, scores = random_case(seed)
    true[:, 2] = False  # a class without positives
    result = accumulate(true, pred, scores).compute()
    for average, zero_division in ZERO_DIVISION.items():
        kw = {"average": average, "zero_division": zero_division}
        assert result[f"precision_{average}"] == pytest.approx(skm.precision_score(true, pred, **kw))
        assert result[f"recall_{average}"] == pytest.approx(skm.recall_score(true, pred, **kw))
        assert result[f"f1_{average}"] == pytest.approx(skm.f1_score(true, pred, **kw))
        assert result[f"f2_{average}"] == pytest.approx(skm.fbeta_score(true, pred, beta=2, **kw))
    assert result["hamming_loss"] == pytest.approx(skm.hamming_loss(true, pred))
    assert result["subset_accuracy"] == pytest.approx(skm.accuracy_score(true, pred))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 3])
def test_ranking_metrics_match_sklearn(seed, ties):
    true, pred, scores = random_case(seed, ties=ties)
    result = accumulate(true, pred, scores).compute()
    assert result["ranking_loss"] == pytest.approx(skm.label_ranking_loss(true, scores))
    assert result["lrap"] == pytest.approx(skm.label_ranking_average_precision_score(true, scores))
    assert result["coverage"] == pytest.approx(skm.coverage_error(true, scores))


def test_one_error_by_brute_force():
    true, pred, scores = random_case(4)
    expected = np.mean([not true[i, np.argmax(scores[i])] for i in range(len(true))])
    assert accumulate(true, pred, scores).compute()["one_error"] == pytest.approx(expected)


def test_per_class_matches_sklearn():
    true, pred, scores = random_case(5)
    true[:, 2] = False
    pred[:, 2] = False  # a class neither present nor predicted: every score undefined
    table = accumulate(true, pred, scores).per_class()
    p, r, f, s = skm.precision_recall_fscore_support(true, pred, zero_division=np.nan)
    assert np.isnan(table["precision"].iloc[-1]) and np.isnan(f[2])  # the class never predicted
    np.testing.assert_allclose(table["precision"], p)
    np.testing.assert_allclose(table["recall"], r)
    np.testing.assert_allclose(table["f1"], f)
    np.testing.assert_array_equal(table["support"], s)


def test_degenerate_all_empty():
    true = np.zeros((4, 3), bool)
    result = accumulate(true, true, np.zeros((4, 3))).compute()
    assert result["f1_micro"] == skm.f1_score(true, true, average="micro", zero_division=0)
    assert result["f1_samples"] == skm.f1_score(true, true, average="samples", zero_division=0)
    assert result["subset_accuracy"] == 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="must be"):
        MultiLabelMetrics(3).update(np.zeros((2, 3)), np.zeros((2, 4)))


def test_calibrated_thresholds_maximise_f1_by_brute_force():
    true, _, scores = random_case(6, n=60, c=4, ties=True)
    thresholds = calibrate_thresholds(scores, true)
    for c in range(4):
        best = max(skm.f1_score(true[:, c], scores[:, c] >= t, zero_division=0) for t in np.unique(scores[:, c]))
        assert skm.f1_score(true[:, c], scores[:, c] >= thresholds[c], zero_division=0) == pytest.approx(best)


def test_class_without_positives_is_never_predicted():
    true = np.zeros((5, 2), bool)
    true[:, 0] = [1, 0, 1, 0, 0]
    thresholds = calibrate_thresholds(np.random.default_rng(0).normal(size=(5, 2)), true)
    assert np.isinf(thresholds[1])


@pytest.mark.parametrize(("seed", "ties"), [(7, False), (8, True), (9, True)])
def test_sample_f1_threshold_is_the_best_candidate_by_brute_force(seed, ties):
    true, _, scores = random_case(seed, n=50, c=5, ties=ties)
    threshold = calibrate_sample_f1_threshold(scores, true)

    def sample_f1(t: float) -> float:
        return skm.f1_score(true, scores >= t, average="samples", zero_division=0)

    candidates = np.unique(scores)
    best = max(sample_f1(t) for t in candidates)
    assert sample_f1(threshold) == pytest.approx(best)
    # ties keep the highest threshold
    assert threshold == max(t for t in candidates if sample_f1(t) == pytest.approx(best))


def test_sample_f1_threshold_by_hand():
    # Image 1: positives {0}; image 2: positives {0, 1}. t = 0.6 predicts {0} and {0, 1}: sample F1 1.
    scores = np.array([[0.9, 0.1, 0.5], [0.7, 0.6, 0.2]])
    true = np.array([[1, 0, 0], [1, 1, 0]], bool)
    assert calibrate_sample_f1_threshold(scores, true) == 0.6


def test_sample_f1_threshold_without_positives_predicts_nothing():
    assert calibrate_sample_f1_threshold(np.zeros((3, 2)), np.zeros((3, 2), bool)) == np.inf


@pytest.mark.parametrize(("seed", "ties"), [(10, False), (11, True)])
def test_per_class_sample_f1_thresholds_cannot_be_improved_in_any_one_class_by_brute_force(seed, ties):
    true, _, scores = random_case(seed, n=40, c=4, ties=ties)
    thresholds = calibrate_sample_f1_thresholds(scores, true)

    def sample_f1(t: np.ndarray) -> float:
        return skm.f1_score(true, scores >= t, average="samples", zero_division=0)

    reached = sample_f1(thresholds)
    assert reached >= sample_f1(np.full(4, calibrate_sample_f1_threshold(scores, true))) - 1e-12
    for c in range(4):
        for candidate in [*np.unique(scores[:, c]), np.inf]:
            moved = thresholds.copy()
            moved[c] = candidate
            assert sample_f1(moved) <= reached + 1e-12, (c, candidate)


def test_per_class_sample_f1_thresholds_by_hand():
    # Class 0 is true wherever it scores ≥ 0.5 and class 1 wherever it scores ≥ −1: no single threshold fits both.
    scores = np.array([[0.9, -0.5], [0.6, -2.0], [0.2, 0.0], [0.1, -3.0]])
    true = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], bool)
    thresholds = calibrate_sample_f1_thresholds(scores, true)
    assert skm.f1_score(true, scores >= thresholds, average="samples", zero_division=0) == 0.75  # image 4: no label
    np.testing.assert_array_equal(scores >= thresholds, true)
