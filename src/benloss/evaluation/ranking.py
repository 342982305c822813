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
When whole blocks of images are resampled, ``ranking_from_block_counts`` gets the same numbers from per-block
tallies read once at every positive: a replicate's sums are then matrix products of its block counts (B, K) with
those tallies (K, positives), and no pass over all N·C entries is made per replicate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benloss.errors import InputError
from benloss.evaluation.bootstrap import CHUNK
from benloss.evaluation.metrics import defined_mean

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
    ap, micro, area = _weighted_parts(scores, labels, weights, chunk)
    return np.stack([defined_mean(ap), micro, defined_mean(area)], axis=1)


def weighted_ranking_parts(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray, chunk: int = CHUNK
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class AP (B, C), micro AP (B,) and per-class ROC AUC (B, C) under image weights (B, N)."""
    scores, labels = _check_scores(scores, labels)
    return _weighted_parts(scores, labels, _check_weights(weights, *scores.shape), chunk)


def _weighted_parts(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray, chunk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # sort every class and the flattened entries once, shared by all chunks of replicates
    classes = _class_rankings(scores, labels)
    micro = _rank(scores.ravel(), labels.ravel())
    micro_images = micro.order // scores.shape[1]  # the image of each flattened entry, in sorted order
    ap, area = np.empty((len(weights), len(classes))), np.empty((len(weights), len(classes)))
    micro_ap = np.empty(len(weights))
    for first in range(0, len(weights), chunk):
        block = weights[first : first + chunk]
        rows = slice(first, first + len(block))
        for c, ranking in enumerate(classes):  # one gather and one pair of sums per class serve both metrics
            tallies = _tallies(ranking, block[:, ranking.order])
            ap[rows, c], area[rows, c] = _ap(ranking, tallies), _auroc(ranking, tallies)
        micro_ap[rows] = _ap(micro, _tallies(micro, block[:, micro_images]))
    return ap, micro_ap, area


@dataclass(frozen=True)
class _BlockTallies:
    """One ranking's per-block counts at its positives (columns, grouped by block), for weights that are constant
    within blocks."""

    hits_end: np.ndarray  # (K, P) positives of each block ranked at or above the end of each positive's tie group
    all_end: np.ndarray  # (K, P) entries of each block ranked at or above it
    starts: np.ndarray  # first column of each block with positives
    owners: np.ndarray  # the block of each run of columns that ``starts`` begins
    negatives_through: np.ndarray  # (K, K) float64: negatives of block j at or above the positives of block k
    tied_owners: np.ndarray  # (T,) block of each positive whose tie group holds other entries
    tied_ahead: np.ndarray  # (K, T) negatives of each block inside such a group, at or above its end
    positives: np.ndarray  # (K,) positives per block
    entries: np.ndarray  # (K,) entries per block


def _counts_through(sorted_blocks: np.ndarray, limits: np.ndarray, n_blocks: int, dtype: type) -> np.ndarray:
    """(K, Q): how many of the sorted elements at positions ≤ ``limits[q]`` lie in each block (limits ascending).

    Each element is counted once, at the first limit it falls under, then counts accumulate along the limits."""
    first = np.searchsorted(limits, np.arange(len(sorted_blocks)), side="left")
    under = first < len(limits)
    flat = sorted_blocks[under] * len(limits) + first[under]
    counts = np.bincount(flat, minlength=n_blocks * len(limits)).reshape(n_blocks, len(limits))
    return np.cumsum(counts, axis=1, dtype=dtype)


def _block_tallies(ranking: _Ranking, entry_blocks: np.ndarray, n_blocks: int, dtype: type) -> _BlockTallies:
    """Per-block counts of ``ranking`` whose element i (original order) lies in block ``entry_blocks[i]``."""
    sorted_blocks = entry_blocks[ranking.order]
    hit_blocks = np.where(ranking.hit > 0, sorted_blocks, n_blocks)  # negatives go to a block that is dropped
    hits_end = _counts_through(hit_blocks, ranking.end, n_blocks + 1, np.float64)[:n_blocks]
    all_end = _counts_through(sorted_blocks, ranking.end, n_blocks, np.float64)
    owner = sorted_blocks[ranking.positives]
    # a positive's tie group counts its tied negatives half: those at or above its end, less those above its start
    tied = np.flatnonzero(ranking.end > ranking.start)
    before = ranking.start[tied] - 1  # ascending, as _counts_through needs
    above = (_counts_through(sorted_blocks, before, n_blocks, np.float64)
             - _counts_through(hit_blocks, before, n_blocks + 1, np.float64)[:n_blocks])  # fmt: skip
    tied_ahead = all_end[:, tied] - hits_end[:, tied] - above
    # columns grouped by block, so per-block sums over positives are one reduceat
    by_block = np.argsort(owner, kind="stable")
    owners, starts = np.unique(owner[by_block], return_index=True)
    hits_end, all_end = hits_end[:, by_block], all_end[:, by_block]
    # negatives of block j at or above each positive, summed over the positives of block k
    negatives_through = np.zeros((n_blocks, n_blocks))
    if len(owners):
        negatives_through[:, owners] = np.add.reduceat(all_end - hits_end, starts, axis=1)
    return _BlockTallies(
        hits_end.astype(dtype), all_end.astype(dtype), starts, owners, negatives_through, owner[tied], tied_ahead,
        np.bincount(owner, minlength=n_blocks).astype(np.float64),
        np.bincount(sorted_blocks, minlength=n_blocks).astype(np.float64),
    )  # fmt: skip


def _block_ap(tallies: _BlockTallies, counts: np.ndarray) -> np.ndarray:
    """Average precision (B,) of one ranking when block k counts ``counts[b, k]`` times."""
    tp, pp = counts @ tallies.hits_end, counts @ tallies.all_end  # (B, P)
    np.maximum(pp, 1, out=pp)  # pp is 0 only where the positive's own weight is 0, so its precision does not count
    np.divide(tp, pp, out=tp)
    precision = np.add.reduceat(tp, tallies.starts, axis=1) if tp.shape[1] else tp  # summed per block
    wide = counts.astype(np.float64)
    return _ratio((wide[:, tallies.owners] * precision).sum(1), wide @ tallies.positives)


def _block_auroc(tallies: _BlockTallies, counts: np.ndarray) -> np.ndarray:
    """ROC AUC (B,) of one ranking when block k counts ``counts[b, k]`` times: a quadratic form in the counts."""
    counts = counts.astype(np.float64)
    n_pos = counts @ tallies.positives
    n_neg = counts @ tallies.entries - n_pos
    # Σ over positives of their weight times the weighted negatives at or above their tie group
    through = ((counts @ tallies.negatives_through) * counts).sum(1)
    ties = 0.5 * ((counts @ tallies.tied_ahead) * counts[:, tallies.tied_owners]).sum(1)
    return _ratio(n_neg * n_pos - through + ties, n_pos * n_neg)


def ranking_from_block_counts(
    scores: np.ndarray, labels: np.ndarray, blocks: np.ndarray, counts: np.ndarray, chunk: int = CHUNK
) -> np.ndarray:
    """RANKING_METRICS (B, 3) when every image of block k counts ``counts[b, k]`` times: equal to
    ``ranking_from_weights(scores, labels, counts[:, blocks])`` up to float32 rounding (counts and tallies are exact
    whole numbers; ratios are float32), at a cost of B × K × positives instead of B × N × C.

    ``blocks`` (N,) holds each image's block id (0 … K − 1) and ``counts`` (B, K) whole non-negative numbers.
    """
    ap, micro, area = block_ranking_parts(scores, labels, blocks, counts, chunk)
    return np.stack([defined_mean(ap), micro, defined_mean(area)], axis=1)


def block_ranking_parts(
    scores: np.ndarray, labels: np.ndarray, blocks: np.ndarray, counts: np.ndarray, chunk: int = CHUNK
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class AP (B, C), micro AP (B,) and per-class ROC AUC (B, C) of ``ranking_from_block_counts``."""
    scores, labels = _check_scores(scores, labels)
    blocks = np.asarray(blocks)
    if blocks.shape != (len(scores),) or blocks.min(initial=0) < 0:
        raise InputError(f"block ids {blocks.shape} must be one non-negative id per image ({len(scores)})")
    n_blocks = int(blocks.max()) + 1
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[1] != n_blocks:
        raise InputError(f"block counts {counts.shape} must be (B, {n_blocks}): one count per block and replicate")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise InputError("block counts must be finite and non-negative")
    # float32 where every sum stays a whole number below 2**24, as in ``_check_weights``
    images = counts @ np.bincount(blocks, minlength=n_blocks)
    exact = (counts == np.round(counts)).all() and images.max(initial=0) * scores.shape[1] < 2**24
    dtype = np.float32 if exact else np.float64
    classes = [_block_tallies(r, blocks, n_blocks, dtype) for r in _class_rankings(scores, labels)]
    micro = _block_tallies(_rank(scores.ravel(), labels.ravel()), np.repeat(blocks, scores.shape[1]), n_blocks, dtype)
    ap, area = np.empty((len(counts), len(classes))), np.empty((len(counts), len(classes)))
    micro_ap = np.empty(len(counts))
    for first in range(0, len(counts), chunk):
        block = counts[first : first + chunk].astype(dtype)
        rows = slice(first, first + len(block))
        for c, tallies in enumerate(classes):
            ap[rows, c], area[rows, c] = _block_ap(tallies, block), _block_auroc(tallies, block)
        micro_ap[rows] = _block_ap(micro, block)
    return ap, micro_ap, area


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
