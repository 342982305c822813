"""Threshold-free ranking metrics and probability metrics of multi-label scores, numpy only.

Conventions: ``scores`` and ``probabilities`` are float arrays (N, C) and ``labels`` boolean or 0/1 arrays (N, C),
images in rows and classes in columns. Definitions are scikit-learn's: average precision is the step-wise
``average_precision_score`` (AP = Σ_n (R_n − R_{n−1}) P_n over distinct thresholds in decreasing order, tied scores
forming one threshold), AUROC is ``roc_auc_score`` (a tied positive-negative pair counts ½) and the micro average
ranks all N·C entries together. NaN rules: a class without positives has NaN AP and AUROC, one without negatives
NaN AUROC, and macro means are nan-means over the classes where the metric is defined.

Every metric is computed from one descending sort per score vector: cumulative (weighted) positives and
predicted positives, read at the end of each element's tie group, give precision at its threshold, and the
negatives before its tie group and at its end give its share of the ROC area. Image weights (bootstrap
multiplicities) enter these sums directly, so ``ranking_from_weights`` needs no resampled copies of the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benloss.errors import InputError
from benloss.evaluation.bootstrap import CHUNK

#: Columns of ``ranking_from_weights`` and keys of ``ranking_summary``.
RANKING_METRICS: tuple[str, ...] = ("map_macro", "map_micro", "auroc_macro")
#: Equal-width probability bins over [0, 1] of the reliability table and the expected calibration error.
PROBABILITY_BINS = 15


@dataclass(frozen=True)
class _Ranking:
    """One score vector sorted by decreasing score; positions refer to the sorted order."""

    order: np.ndarray  # indices of the original elements, highest score first
    hit: np.ndarray  # labels in sorted order, 0.0 or 1.0
    positives: np.ndarray  # sorted positions of the positive elements
    start: np.ndarray  # first sorted position of each positive's tie group
    end: np.ndarray  # last sorted position of each positive's tie group


@dataclass(frozen=True)
class _Tallies:
    """Weighted sums of one ranking (B replicates); ``hits`` and ``predicted`` column k sums the first k elements."""

    w_pos: np.ndarray  # (B, P) weights of the positives
    hits: np.ndarray  # (B, n + 1) cumulative weighted positives
    predicted: np.ndarray  # (B, n + 1) cumulative weights


def _rank(scores: np.ndarray, labels: np.ndarray) -> _Ranking:
    """Sort 1-d ``scores`` once and locate the tie group of every positive."""
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    new_group = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:] - 1, len(ordered) - 1]
    hit = labels[order].astype(np.float64)
    positives = np.flatnonzero(hit)
    return _Ranking(order, hit, positives, starts[group[positives]], ends[group[positives]])


def _class_rankings(scores: np.ndarray, labels: np.ndarray) -> list[_Ranking]:
    return [_rank(scores[:, c], labels[:, c]) for c in range(scores.shape[1])]


def _cumsum0(values: np.ndarray) -> np.ndarray:
    """Cumulative sums along the last axis with a leading 0, in the values' precision."""
    out = np.zeros((*values.shape[:-1], values.shape[-1] + 1), dtype=values.dtype)
    np.cumsum(values, axis=-1, out=out[..., 1:])
    return out


def _tallies(ranking: _Ranking, weights: np.ndarray) -> _Tallies:
    """Sums of image weights (B, n), given in the ranking's sorted order."""
    hit = ranking.hit.astype(weights.dtype, copy=False)
    return _Tallies(weights[:, ranking.positives], _cumsum0(weights * hit), _cumsum0(weights))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (an undefined metric)."""
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _ap(ranking: _Ranking, tallies: _Tallies) -> np.ndarray:
    """Average precision (B,): mean over weighted positives of the precision at their tie group's threshold."""
    tp_end, pp_end = tallies.hits[:, ranking.end + 1], tallies.predicted[:, ranking.end + 1]
    # pp_end is 0 only where the positive's own weight is 0, so its precision does not count
    precision = np.divide(tp_end, pp_end, out=np.zeros_like(tp_end), where=pp_end > 0)
    return _ratio((tallies.w_pos * precision).sum(1), tallies.hits[:, -1])


def _auroc(ranking: _Ranking, tallies: _Tallies) -> np.ndarray:
    """ROC AUC (B,): share of weighted positive-negative pairs ranked correctly, ties counting ½."""
    n_pos = tallies.hits[:, -1]
    n_neg = tallies.predicted[:, -1] - n_pos
    neg_through = tallies.predicted[:, ranking.end + 1] - tallies.hits[:, ranking.end + 1]
    neg_before = tallies.predicted[:, ranking.start] - tallies.hits[:, ranking.start]
    # negatives scored below a positive are n_neg − neg_through, tied ones neg_through − neg_before (each ½)
    area = (tallies.w_pos * (n_neg[:, None] - 0.5 * (neg_through + neg_before))).sum(1)
    return _ratio(area, n_pos * n_neg)


def _per_class(
    metric: Callable[[_Ranking, _Tallies], np.ndarray], rankings: list[_Ranking], weights: np.ndarray
) -> np.ndarray:
    """``metric`` (``_ap`` or ``_auroc``) of every class (B, C) under image weights (B, N)."""
    return np.stack([metric(r, _tallies(r, weights[:, r.order])) for r in rankings], axis=1)


def _check_scores(scores: np.ndarray, labels: np.ndarray, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 scores and boolean labels, both (N, C)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise InputError(f"{name} {scores.shape} and labels {labels.shape} must both be (N, C)")
    if scores.size == 0:
        raise InputError(f"{name} {scores.shape} hold no entries")
    if not np.isfinite(scores).all():
        raise InputError(f"{name} hold NaN or infinite values")
    if not np.isin(labels, (0, 1)).all():
        raise InputError("labels must be boolean or 0/1")
    return scores, labels.astype(bool)


def _check_weights(weights: np.ndarray, n_images: int, n_classes: int) -> np.ndarray:
    """Validated weights: float32 where they are whole numbers whose sums over all N·C entries stay exact in
    float32 (below 2**24; bootstrap multiplicities), which halves the memory the cumulative sums stream through;
    float64 otherwise."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] != n_images:
        raise InputError(f"weights {weights.shape} must be (B, {n_images}): one multiplicity per image and replicate")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise InputError("weights must be finite and non-negative")
    exact = (weights == np.round(weights)).all() and (weights.sum(1).max(initial=0) * n_classes < 2**24)
    return weights.astype(np.float32) if exact else weights


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN (without numpy's warning) where every value is NaN."""
    defined = ~np.isnan(values)
    return _ratio(np.where(defined, values, 0.0).sum(-1), defined.sum(-1))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class average precision (C,) as scikit-learn's ``average_precision_score``; NaN without positives."""
    scores, labels = _check_scores(scores, labels)
    return _per_class(_ap, _class_rankings(scores, labels), np.ones((1, len(scores))))[0]


def auroc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class ROC AUC (C,) as scikit-learn's ``roc_auc_score``; NaN without positives or without negatives."""
    scores, labels = _check_scores(scores, labels)
    return _per_class(_auroc, _class_rankings(scores, labels), np.ones((1, len(scores))))[0]


def ranking_summary(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """RANKING_METRICS: macro AP (nan-mean over classes with a positive), micro AP of all entries, macro AUROC."""
    scores, labels = _check_scores(scores, labels)
    values = _ranking_weighted(scores, labels, np.ones((1, len(scores))), CHUNK)[0]
    return {name: float(value) for name, value in zip(RANKING_METRICS, values, strict=True)}


def ranking_from_weights(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """RANKING_METRICS (B, 3) when image i counts ``weights[b, i]`` times (non-negative, e.g. bootstrap draws).

    Equal to ``ranking_summary`` of the data with rows repeated by integer weights. A class whose weighted
    positives (or, for AUROC, negatives) are 0 in a replicate has a NaN metric there, and the macro means are
    nan-means over the remaining classes. Replicates are processed ``chunk`` at a time, so an intermediate
    array holds at most chunk × N × C floats.
    """
    scores, labels = _check_scores(scores, labels)
    if chunk < 1:
        raise InputError(f"chunk must be at least 1, not {chunk}")
    return _ranking_weighted(scores, labels, _check_weights(weights, *scores.shape), chunk)


def _ranking_weighted(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray, chunk: int) -> np.ndarray:
    # sort every class and the flattened entries once, shared by all chunks of replicates
    classes = _class_rankings(scores, labels)
    micro = _rank(scores.ravel(), labels.ravel())
    micro_images = micro.order // scores.shape[1]  # the image of each flattened entry, in sorted order
    out = np.empty((len(weights), len(RANKING_METRICS)))
    for first in range(0, len(weights), chunk):
        block = weights[first : first + chunk]
        rows = slice(first, first + len(block))
        ap, area = np.empty((len(block), len(classes))), np.empty((len(block), len(classes)))
        for c, ranking in enumerate(classes):  # one gather and one pair of sums per class serve both metrics
            tallies = _tallies(ranking, block[:, ranking.order])
            ap[:, c], area[:, c] = _ap(ranking, tallies), _auroc(ranking, tallies)
        out[rows, 0] = _nanmean(ap)
        out[rows, 1] = _ap(micro, _tallies(micro, block[:, micro_images]))
        out[rows, 2] = _nanmean(area)
    return out


def micro_pr_curve(scores: np.ndarray, labels: np.ndarray, max_points: int = 200) -> pd.DataFrame:
    """Micro precision-recall curve (``threshold, precision, recall``) at distinct thresholds, decreasing.

    The points of scikit-learn's ``precision_recall_curve`` on the flattened entries, without its final
    (recall 0, precision 1) point, thinned to at most ``max_points`` rows at evenly spaced recall values
    (the first and last rows are kept).
    """
    scores, labels = _check_scores(scores, labels)
    if max_points < 2:
        raise InputError(f"max_points must be at least 2 (the first and last point), not {max_points}")
    flat_scores, flat_labels = scores.ravel(), labels.ravel()
    if not flat_labels.any():
        raise InputError("labels hold no positive entry: recall, and so the precision-recall curve, is undefined")
    order = np.argsort(-flat_scores, kind="stable")
    ordered = flat_scores[order]
    ends = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), len(ordered) - 1]
    tp = np.cumsum(flat_labels[order])[ends]
    recall = tp / tp[-1]
    keep = np.arange(len(ends))
    if len(ends) > max_points:
        # first point at or beyond each target recall; the last row (lowest threshold) is added separately
        targets = np.linspace(recall[0], recall[-1], max_points - 1)
        keep = np.unique(np.r_[np.searchsorted(recall, targets), len(ends) - 1])
    return pd.DataFrame(
        {"threshold": ordered[ends][keep], "precision": (tp / (ends + 1))[keep], "recall": recall[keep]}
    )


def _check_probabilities(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities, labels = _check_scores(probabilities, labels, name="probabilities")
    if ((probabilities < 0) | (probabilities > 1)).any():
        raise InputError("probabilities must lie in [0, 1]")
    return probabilities, labels


def reliability_table(probabilities: np.ndarray, labels: np.ndarray, bins: int = PROBABILITY_BINS) -> pd.DataFrame:
    """One row per equal-width bin over [0, 1] of all N·C entries: ``bin_low, bin_high, count, confidence,
    frequency`` (mean probability and share of positives in the bin, NaN if empty).

    Bins are closed on the left, and the last one also holds 1.0.
    """
    probabilities, labels = _check_probabilities(probabilities, labels)
    if bins < 1:
        raise InputError(f"bins must be at least 1, not {bins}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.minimum(np.searchsorted(edges, probabilities.ravel(), side="right") - 1, bins - 1)
    count = np.bincount(index, minlength=bins)
    confidence = _ratio(np.bincount(index, weights=probabilities.ravel(), minlength=bins), count)
    frequency = _ratio(np.bincount(index, weights=labels.ravel(), minlength=bins), count)
    return pd.DataFrame(
        {"bin_low": edges[:-1], "bin_high": edges[1:], "count": count, "confidence": confidence, "frequency": frequency}
    )


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = PROBABILITY_BINS) -> float:
    """ECE: Σ_b (count_b / total) |frequency_b − confidence_b| over the non-empty bins of ``reliability_table``."""
    table = reliability_table(probabilities, labels, bins)
    filled = table[table["count"] > 0]
    gap = (filled["frequency"] - filled["confidence"]).abs()
    return float((filled["count"] * gap).sum() / table["count"].sum())


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean over all N·C entries of (p − y)²."""
    probabilities, labels = _check_probabilities(probabilities, labels)
    return float(np.mean((probabilities - labels) ** 2))
