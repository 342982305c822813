"""Paired bootstrap over test images: intervals for Table 1, pairwise differences with Holm-adjusted p-values.

One resample of the test images is shared by every model (paired), so differences between losses keep the
correlation of their errors on the same images. Replicate ``b`` draws its images with the generator seeded
``[seed, b]``, so results do not depend on how the replicates are chunked. A replicate's counts are a product
``W @ X`` of its image multiplicities ``W`` (images drawn n times count n times) with per-image counts ``X``
(true positives and false positives per class, sample precision, recall and F1), so all replicates of a chunk
cost one matrix product; metrics then follow the definitions of ``benloss.evaluation.metrics`` (zero division
gives 0).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from benloss.errors import InputError
from benloss.evaluation.metrics import f_beta, safe_ratio

log = logging.getLogger(__name__)

#: Metrics computed per replicate, named as the keys of ``MultiLabelMetrics.compute``; ``f1_rare`` is the
#: macro F1 over the classes given as rare.
METRICS: tuple[str, ...] = (
    "precision_samples", "recall_samples", "f1_samples",
    "precision_micro", "recall_micro", "f1_micro",
    "precision_macro", "recall_macro", "f1_macro", "f1_rare",
)  # fmt: skip
#: Decision rules whose predictions are bootstrapped: each loss's own rule and its two validation calibrators.
RULES: tuple[str, ...] = ("own", "calibrated", "calibrated_per_class")
#: The rule name of the threshold-free metrics (``benloss.evaluation.ranking.RANKING_METRICS``) in the tables.
RANKING_RULE = "ranking"
#: Pairwise comparisons: metric (an own-rule metric of METRICS, or a ranking metric), name in the tables.
PAIRWISE_METRICS: tuple[tuple[str, str], ...] = (
    ("f1_samples", "F1 samples"),
    ("f1_micro", "F1 micro"),
    ("f1_macro", "F1 macro"),
    ("f1_rare", "F1 rarest third"),
    ("map_macro", "mAP macro"),
    ("map_micro", "mAP micro"),
    ("auroc_macro", "AUROC macro"),
)
N_BOOT = 2000
CHUNK = 64


def replicate_indices(n_images: int, replicate: int, seed: int) -> np.ndarray:
    """The test images (with repetition) of bootstrap replicate ``replicate``."""
    return np.random.default_rng([seed, replicate]).integers(0, n_images, n_images, dtype=np.uint32)


def replicate_weights(n_images: int, replicates: range, seed: int) -> np.ndarray:
    """Multiplicity of every image in each replicate, (len(replicates), n_images) float32."""
    drawn = np.stack([replicate_indices(n_images, b, seed) for b in replicates])
    offsets = (np.arange(len(replicates)) * n_images)[:, None]
    counts = np.bincount((drawn + offsets).ravel(), minlength=len(replicates) * n_images)
    return counts.reshape(len(replicates), n_images).astype(np.float32)


def per_image_counts(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, 2C + 3): per-class true and false positives, then sample precision, recall and F1 of each image."""
    pred, true = np.asarray(predictions, bool), np.asarray(labels, bool)
    if pred.shape != true.shape or pred.ndim != 2:
        raise InputError(f"predictions {pred.shape} and labels {true.shape} must both be (N, C)")
    tp, fp = pred & true, pred & ~true
    row_tp, row_fp, row_fn = tp.sum(1), fp.sum(1), (~pred & true).sum(1)
    precision, recall = safe_ratio(row_tp, row_tp + row_fp, 0.0), safe_ratio(row_tp, row_tp + row_fn, 0.0)
    sample = np.stack([precision, recall, f_beta(row_tp, row_fp, row_fn, 1.0, 0.0)], axis=1)
    return np.concatenate([tp, fp, sample], axis=1).astype(np.float32)


def metrics_from_sums(sums: np.ndarray, positives: np.ndarray, n_images: float, rare: np.ndarray) -> np.ndarray:
    """METRICS from summed per-image counts ``sums`` (..., 2C + 3) and positives per class (..., C)."""
    n_classes = positives.shape[-1]
    tp, fp = sums[..., :n_classes], sums[..., n_classes : 2 * n_classes]
    fn = positives - tp
    sample = sums[..., 2 * n_classes :] / n_images
    micro_tp, micro_fp, micro_fn = tp.sum(-1), fp.sum(-1), fn.sum(-1)
    class_f1 = f_beta(tp, fp, fn, 1.0, 0.0)
    columns = [
        sample[..., 0],
        sample[..., 1],
        sample[..., 2],
        safe_ratio(micro_tp, micro_tp + micro_fp, 0.0),
        safe_ratio(micro_tp, micro_tp + micro_fn, 0.0),
        f_beta(micro_tp, micro_fp, micro_fn, 1.0, 0.0),
        safe_ratio(tp, tp + fp, 0.0).mean(-1),
        safe_ratio(tp, tp + fn, 0.0).mean(-1),
        class_f1.mean(-1),
        class_f1[..., rare].mean(-1) if len(rare) else np.full(class_f1.shape[:-1], np.nan),
    ]
    return np.stack(columns, axis=-1)


def bootstrap_metrics(
    predictions: Sequence[np.ndarray],
    labels: np.ndarray,
    rare: Sequence[int] = (),
    n_boot: int = N_BOOT,
    seed: int = 0,
    chunk: int = CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """Observed METRICS of every model (M, K) and their paired bootstrap replicates (B, M, K).

    ``predictions`` holds M boolean (N, C) arrays for the same N test images as ``labels``.
    """
    labels = np.asarray(labels, bool)
    n_images = len(labels)
    if n_images == 0:
        raise InputError("no test images to resample")
    rare = np.asarray(rare, dtype=int)
    counts = [per_image_counts(p, labels) for p in predictions]
    truth = labels.astype(np.float32)
    observed = np.stack([metrics_from_sums(x.sum(0, dtype=np.float64), truth.sum(0), n_images, rare) for x in counts])
    replicates = np.empty((n_boot, len(counts), len(METRICS)))
    quick = n_boot * n_images * len(counts) < 10**8
    for start in tqdm(range(0, n_boot, chunk), desc="bootstrap", unit="chunk", mininterval=5, disable=quick):
        weights = replicate_weights(n_images, range(start, min(start + chunk, n_boot)), seed)
        positives = weights @ truth
        for m, x in enumerate(counts):
            replicates[start : start + len(weights), m] = metrics_from_sums(weights @ x, positives, n_images, rare)
    return observed, replicates


def percentile_interval(replicates: np.ndarray, level: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval: the (1 − level)/2 and (1 + level)/2 quantiles of the replicates where the metric is
    defined (a replicate that draws no positive of any class leaves macro mAP undefined, NaN); NaN where none is."""
    replicates = np.asarray(replicates, dtype=np.float64)
    undefined = np.isnan(replicates).all(axis=axis, keepdims=True)
    low, high = np.nanpercentile(np.where(undefined, 0.0, replicates), [50 * (1 - level), 50 * (1 + level)], axis=axis)
    undefined = undefined.squeeze(axis)
    return np.where(undefined, np.nan, low), np.where(undefined, np.nan, high)


def bootstrap_p_value(differences: np.ndarray, axis: int = 0) -> np.ndarray:
    """Two-sided p-value of "no difference": twice the smaller tail share of replicates at or beyond 0.

    Each tail counts the observed sample as one more replicate, (k + 1) / (B + 1), so p is never 0. Replicates where
    the difference is undefined (NaN) count in neither tail nor in B; with none defined, p is NaN.
    """
    defined = ~np.isnan(differences)
    n = defined.sum(axis)  # replicates where the metric is defined for both losses
    below = ((differences <= 0).sum(axis) + 1) / (n + 1)
    above = ((differences >= 0).sum(axis) + 1) / (n + 1)
    return np.where(n > 0, np.minimum(1.0, 2 * np.minimum(below, above)), np.nan)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment: the i-th smallest of m p-values becomes max_{j ≤ i} (m − j + 1) p_(j), ≤ 1."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted


def bootstrap_mean_ci(
    values: Sequence[float], n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile bootstrap interval (low, high), resampling the values."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) == 0:
        raise InputError("no values to resample")
    means = np.concatenate(
        [
            replicate_weights(len(values), range(s, min(s + CHUNK, n_boot)), seed) @ values
            for s in range(0, n_boot, CHUNK)
        ]
    ) / len(values)
    low, high = percentile_interval(means, level)
    return float(values.mean()), float(low), float(high)


def pairs(names: Sequence[str]) -> Iterator[tuple[int, int]]:
    """Every unordered pair of positions, in table order."""
    return itertools.combinations(range(len(names)), 2)


def pairwise_table(
    observed: np.ndarray, replicates: np.ndarray, names: Sequence[str], metric_names: Sequence[str], level: float = 0.95
) -> pd.DataFrame:
    """All pairs: difference a − b (in % points), its interval, two-sided p and Holm p within each metric.

    ``observed`` is (L, K) and ``replicates`` (B, L, K) over the losses ``names`` and metrics ``metric_names``.
    """
    frames = []
    for k, metric in enumerate(metric_names):
        rows = []
        for a, b in pairs(names):
            differences = 100 * (replicates[:, a, k] - replicates[:, b, k])
            low, high = percentile_interval(differences, level)
            rows.append({"metric": metric, "loss_a": names[a], "loss_b": names[b],
                         "difference": 100 * (observed[a, k] - observed[b, k]), "ci_low": float(low),
                         "ci_high": float(high), "p_value": float(bootstrap_p_value(differences))})  # fmt: skip
        frame = pd.DataFrame(rows, columns=["metric", "loss_a", "loss_b", "difference", "ci_low", "ci_high", "p_value"])
        frame["p_holm"] = holm(frame["p_value"]) if len(frame) else []
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def interval_table(
    observed: np.ndarray, replicates: np.ndarray, models: Sequence[tuple[str, str, int]], level: float = 0.95,
    metric_names: Sequence[str] = METRICS,
) -> pd.DataFrame:  # fmt: skip
    """Per (rule, loss): seed-mean estimate, its test-image interval and the two spreads, all in %.

    ``models`` names the M models as (rule, loss, seed). ``test_se`` is the bootstrap standard error of one
    model's metric, averaged over seeds; ``seed_std`` the standard deviation over seeds (NaN for one seed);
    ``dominant_spread`` says which is larger.
    """
    keys = pd.DataFrame(models, columns=["rule", "loss", "seed"])
    rows = []
    for (rule, loss), group in keys.groupby(["rule", "loss"], sort=False):
        index = group.index.to_numpy()
        seed_mean = 100 * replicates[:, index].mean(1)
        low, high = percentile_interval(seed_mean, level)
        test_se = 100 * replicates[:, index].std(0, ddof=1).mean(0)
        seed_std = 100 * observed[index].std(0, ddof=1) if len(index) > 1 else np.full(len(metric_names), np.nan)
        for k, metric in enumerate(metric_names):
            dominant = "" if np.isnan(seed_std[k]) else ("seeds" if seed_std[k] > test_se[k] else "test images")
            rows.append({"rule": rule, "loss": loss, "metric": metric, "estimate": 100 * observed[index, k].mean(),
                         "ci_low": low[k], "ci_high": high[k], "test_se": test_se[k], "seed_std": seed_std[k],
                         "seeds": len(index), "dominant_spread": dominant})  # fmt: skip
    return pd.DataFrame(rows)


def rare_classes(train_counts: pd.Series) -> list[int]:
    """Positions of the rarest third of the classes by training count (stable order on ties)."""
    order = np.argsort(train_counts.to_numpy(), kind="stable")
    return sorted(order[: len(train_counts) // 3].tolist())
