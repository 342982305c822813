"""Two-level intervals for Table 1 and the pairwise differences between losses: test-set variation by a paired
block bootstrap, seed variation from the spread over seeds; Holm-adjusted p-values.

**Test set.** One resample of the test set is shared by every model (paired), so differences between losses keep
the correlation of their errors on the same images. It draws spatial blocks (``benloss.evaluation.blocks``) with
replacement, as many as the test set has, and an image counts as often as its block was drawn. Replicate ``b``
draws with the generator seeded ``[seed, b]``, so results do not depend on how replicates are chunked. A
replicate's counts are a product of its block counts with per-image counts ``X`` (true and
false positives per class, sample precision, recall and F1, and 1 for the image's weight), summed per block first,
so all replicates of a chunk cost one small matrix product whatever the test set's size; metrics then follow
``benloss.evaluation.metrics`` (undefined classes leave macro averages in the point estimate and in every replicate
alike).

**Seeds.** A seed is shared by every loss (same initial weights, same batch order), so seeds pair across losses.
For S ≥ 2 seeds an estimate is the mean over seeds; its error is the test-set error (the block bootstrap of that
mean) plus the seed error, ā − μ over S seeds' effects. The seed variance is estimated by the method of moments:
the spread over seeds minus the part of it that test-set sampling explains, σ̂² = max(0, s² − Σ_s Var*(m_s − m̄)
/ (S − 1)), and with so few seeds its error is Student-t with S − 1 degrees of freedom. Replicate ``b`` adds
t_b σ̂ / √S to the bootstrapped mean, with one t_b per replicate (generator ``[seed, b, SEED_STREAM]``) shared by
every quantity; a difference between two losses is treated the same way from its per-seed differences, so the
pairing of seeds is kept. Percentile intervals and p-values then read the combined replicates. With one seed the
seed term is 0: the interval is about that trained model, not about its loss.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from benloss.errors import InputError
from benloss.evaluation.blocks import independent
from benloss.evaluation.metrics import class_scores, defined_mean, f_beta, safe_ratio

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
#: Third entry of the generator seed of a replicate's seed-level draw, apart from its test-set draw ``[seed, b]``.
SEED_STREAM = 1


def replicate_indices(n_blocks: int, replicate: int, seed: int) -> np.ndarray:
    """The blocks (with repetition) that bootstrap replicate ``replicate`` draws."""
    return np.random.default_rng([seed, replicate]).integers(0, n_blocks, n_blocks, dtype=np.uint32)


def replicate_counts(n_blocks: int, replicates: range, seed: int) -> np.ndarray:
    """How often each block is drawn in each replicate, (len(replicates), K) float32."""
    drawn = np.stack([replicate_indices(n_blocks, b, seed) for b in replicates])
    offsets = (np.arange(len(replicates)) * n_blocks)[:, None]
    counts = np.bincount((drawn + offsets).ravel(), minlength=len(replicates) * n_blocks)
    return counts.reshape(len(replicates), n_blocks).astype(np.float32)


def replicate_weights(blocks: np.ndarray, replicates: range, seed: int) -> np.ndarray:
    """Multiplicity of every image in each replicate, (len(replicates), N) float32: how often its block was drawn.

    ``blocks`` holds each image's block id (0 … K − 1, every id used; ``blocks.independent`` for one block per image).
    """
    blocks = np.asarray(blocks)
    return replicate_counts(int(blocks.max()) + 1 if len(blocks) else 0, replicates, seed)[:, blocks]


def block_sums(values: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Sum of the rows of ``values`` (N, F) over each block, (K, F) float64: a replicate's sums are then
    ``replicate_counts @ block_sums``, whatever the number of images."""
    sizes = np.bincount(blocks)
    if (sizes == 0).any():
        raise InputError(f"block ids must number the blocks 0 … K − 1 without gaps; {np.flatnonzero(sizes == 0)[:5]} "
                         "hold no image")  # fmt: skip
    order = np.argsort(blocks, kind="stable")
    return np.add.reduceat(np.asarray(values, dtype=np.float64)[order], np.r_[0, np.cumsum(sizes)[:-1]], axis=0)


def per_image_counts(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, 2C + 4): per-class true and false positives, sample precision, recall and F1 of each image, and 1."""
    pred, true = np.asarray(predictions, bool), np.asarray(labels, bool)
    if pred.shape != true.shape or pred.ndim != 2:
        raise InputError(f"predictions {pred.shape} and labels {true.shape} must both be (N, C)")
    tp, fp = pred & true, pred & ~true
    row_tp, row_fp, row_fn = tp.sum(1), fp.sum(1), (~pred & true).sum(1)
    precision, recall = safe_ratio(row_tp, row_tp + row_fp, 0.0), safe_ratio(row_tp, row_tp + row_fn, 0.0)
    sample = np.stack([precision, recall, f_beta(row_tp, row_fp, row_fn, 1.0, 0.0), np.ones(len(pred))], axis=1)
    return np.concatenate([tp, fp, sample], axis=1).astype(np.float32)


def metrics_from_sums(sums: np.ndarray, positives: np.ndarray, rare: np.ndarray) -> np.ndarray:
    """METRICS from summed per-image counts ``sums`` (..., 2C + 4) and positives per class (..., C)."""
    n_classes = positives.shape[-1]
    tp, fp = sums[..., :n_classes], sums[..., n_classes : 2 * n_classes]
    fn = positives - tp
    sample = sums[..., 2 * n_classes : 2 * n_classes + 3] / sums[..., -1:]
    micro_tp, micro_fp, micro_fn = tp.sum(-1), fp.sum(-1), fn.sum(-1)
    per_class = class_scores(tp, fp, fn)
    columns = [
        sample[..., 0],
        sample[..., 1],
        sample[..., 2],
        safe_ratio(micro_tp, micro_tp + micro_fp, 0.0),
        safe_ratio(micro_tp, micro_tp + micro_fn, 0.0),
        f_beta(micro_tp, micro_fp, micro_fn, 1.0, 0.0),
        defined_mean(per_class["precision"]),
        defined_mean(per_class["recall"]),
        defined_mean(per_class["f1"]),
        defined_mean(per_class["f1"][..., rare]) if len(rare) else np.full(tp.shape[:-1], np.nan),
    ]
    return np.stack(columns, axis=-1)


def bootstrap_metrics(
    predictions: Sequence[np.ndarray],
    labels: np.ndarray,
    rare: Sequence[int] = (),
    n_boot: int = N_BOOT,
    seed: int = 0,
    chunk: int = CHUNK,
    blocks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Observed METRICS of every model (M, K) and their paired bootstrap replicates (B, M, K).

    ``predictions`` holds M boolean (N, C) arrays for the same N test images as ``labels``; ``blocks`` their block
    ids (default: every image its own block).
    """
    labels = np.asarray(labels, bool)
    n_images = len(labels)
    if n_images == 0:
        raise InputError("no test images to resample")
    blocks = independent(n_images) if blocks is None else np.asarray(blocks)
    if blocks.shape != (n_images,):
        raise InputError(f"{blocks.shape[0]} block ids for {n_images} test images")
    rare = np.asarray(rare, dtype=int)
    truth = labels.astype(np.float32)
    per_block = [block_sums(per_image_counts(p, labels), blocks) for p in predictions]
    block_truth = block_sums(truth, blocks)
    observed = np.stack([metrics_from_sums(x.sum(0), truth.sum(0, dtype=np.float64), rare) for x in per_block])
    replicates = np.empty((n_boot, len(per_block), len(METRICS)))
    quick = n_boot * len(block_truth) * len(per_block) < 10**8
    for start in tqdm(range(0, n_boot, chunk), desc="bootstrap", unit="chunk", mininterval=5, disable=quick):
        counts = replicate_counts(len(block_truth), range(start, min(start + chunk, n_boot)), seed).astype(np.float64)
        positives = counts @ block_truth
        for m, x in enumerate(per_block):
            replicates[start : start + len(counts), m] = metrics_from_sums(counts @ x, positives, rare)
    return observed, replicates


def class_f1_bootstrap(
    predictions: Sequence[np.ndarray], labels: np.ndarray, n_boot: int, seed: int, blocks: np.ndarray,
    chunk: int = CHUNK,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per-class F1 of every model (M, C) and its replicates (B, M, C) on the resamples of ``bootstrap_metrics``."""
    labels = np.asarray(labels, bool)
    n_classes = labels.shape[1]
    per_block = [block_sums(per_image_counts(p, labels)[:, : 2 * n_classes], blocks) for p in predictions]
    block_truth = block_sums(labels.astype(np.float32), blocks)

    def f1(sums: np.ndarray, positives: np.ndarray) -> np.ndarray:
        tp, fp = sums[..., :n_classes], sums[..., n_classes:]
        return class_scores(tp, fp, positives - tp)["f1"]

    observed = np.stack([f1(x.sum(0), block_truth.sum(0)) for x in per_block])
    replicates = np.empty((n_boot, len(per_block), n_classes))
    for start in range(0, n_boot, chunk):
        counts = replicate_counts(len(block_truth), range(start, min(start + chunk, n_boot)), seed).astype(np.float64)
        positives = counts @ block_truth
        for m, x in enumerate(per_block):
            replicates[start : start + len(counts), m] = f1(counts @ x, positives)
    return observed, replicates


def seed_draws(n_boot: int, n_seeds: int, seed: int, stream: int = SEED_STREAM) -> np.ndarray:
    """The seed-level draw t_b of every replicate (B,): Student-t with S − 1 degrees of freedom; 0 for one seed.
    Quantities whose seeds do not pair (another architecture's) take their own ``stream``."""
    if n_seeds < 2:
        return np.zeros(n_boot)
    return np.array([np.random.default_rng([seed, b, stream]).standard_t(n_seeds - 1) for b in range(n_boot)])


@dataclass(frozen=True)
class TwoLevel:
    """A quantity measured on S seeds, combined over seeds and test set (``two_level``); arrays over metrics (K,)."""

    estimate: np.ndarray  # mean over seeds
    replicates: np.ndarray  # (B, K): bootstrapped mean over seeds plus the seed-level term
    seed_std: np.ndarray  # standard deviation of the S observed values (NaN for one seed)
    seed_sd: np.ndarray  # σ̂: the seed-to-seed standard deviation once test-set sampling is taken out (0 for one seed)
    test_se: np.ndarray  # bootstrap standard error of one seed's value (root mean square over seeds)


def _nanvar(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Variance over ``axis`` of the defined values (ddof 1); NaN where fewer than two are defined."""
    defined = ~np.isnan(values)
    n = defined.sum(axis)
    mean = safe_ratio(np.where(defined, values, 0.0).sum(axis), n, np.nan)
    squares = np.where(defined, (values - np.expand_dims(mean, axis)) ** 2, 0.0).sum(axis)
    return safe_ratio(squares, n - 1, np.nan)


def two_level(observed: np.ndarray, replicates: np.ndarray, draws: np.ndarray) -> TwoLevel:
    """Combine S seeds' observed values (S, K) and their paired test-set replicates (B, S, K) with the seed-level
    draws (B,) of ``seed_draws`` (the module docstring gives the method)."""
    observed, replicates = np.asarray(observed, dtype=np.float64), np.asarray(replicates, dtype=np.float64)
    n_seeds = len(observed)
    mean_replicates = replicates.mean(1)
    test_se = np.sqrt(defined_mean(_nanvar(replicates).T))
    if n_seeds < 2:
        seed_std, seed_sd = np.full(observed.shape[1], np.nan), np.zeros(observed.shape[1])
    else:
        seed_std = observed.std(0, ddof=1)
        explained = _nanvar(replicates - mean_replicates[:, None]).sum(0) / (n_seeds - 1)
        seed_sd = np.sqrt(np.maximum(0.0, seed_std**2 - np.nan_to_num(explained)))
    combined = mean_replicates + np.asarray(draws)[:, None] * (seed_sd / np.sqrt(n_seeds))
    return TwoLevel(observed.mean(0), combined, seed_std, seed_sd, test_se)


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
            replicate_weights(independent(len(values)), range(s, min(s + CHUNK, n_boot)), seed) @ values
            for s in range(0, n_boot, CHUNK)
        ]
    ) / len(values)
    low, high = percentile_interval(means, level)
    return float(values.mean()), float(low), float(high)


def pairs(names: Sequence[str]) -> Iterator[tuple[int, int]]:
    """Every unordered pair of positions, in table order."""
    return itertools.combinations(range(len(names)), 2)


def seed_groups(models: Sequence[tuple[str, int]]) -> tuple[list[str], list[int], list[np.ndarray]]:
    """Losses (in order of appearance), their common seeds (sorted), and per loss the model positions in seed order.

    Every loss must have the same seeds: seeds pair across losses."""
    losses = list(dict.fromkeys(loss for loss, _ in models))
    seeds_of = {loss: sorted(seed for other, seed in models if other == loss) for loss in losses}
    seeds = seeds_of[losses[0]] if losses else []
    for loss, found in seeds_of.items():
        if found != seeds:
            raise InputError(f"seeds pair across losses, but {loss} has seeds {found} and {losses[0]} {seeds}")
    position = {model: m for m, model in enumerate(models)}
    return losses, seeds, [np.array([position[loss, seed] for seed in seeds]) for loss in losses]


def pairwise_table(
    observed: np.ndarray, replicates: np.ndarray, models: Sequence[tuple[str, int]], metric_names: Sequence[str],
    draws: np.ndarray, level: float = 0.95,
) -> pd.DataFrame:  # fmt: skip
    """All pairs of losses: mean difference a − b over paired seeds (in % points), its two-level interval, the seed
    spread of the difference, two-sided p and Holm p within each metric.

    ``observed`` is (M, K) and ``replicates`` (B, M, K) over the models ``models`` (loss, seed) and metrics
    ``metric_names``; ``draws`` are the seed-level draws (``seed_draws``).
    """
    losses, seeds, groups = seed_groups(models)
    combined = {
        (a, b): two_level(100 * (observed[groups[a]] - observed[groups[b]]),
                          100 * (replicates[:, groups[a]] - replicates[:, groups[b]]), draws)
        for a, b in pairs(losses)
    }  # fmt: skip
    frames = []
    for k, metric in enumerate(metric_names):
        rows = []
        for (a, b), difference in combined.items():
            low, high = percentile_interval(difference.replicates[:, k], level)
            rows.append({"metric": metric, "loss_a": losses[a], "loss_b": losses[b],
                         "difference": difference.estimate[k], "ci_low": float(low), "ci_high": float(high),
                         "seed_std": difference.seed_std[k], "seeds": len(seeds),
                         "p_value": float(bootstrap_p_value(difference.replicates[:, k]))})  # fmt: skip
        frame = pd.DataFrame(rows, columns=["metric", "loss_a", "loss_b", "difference", "ci_low", "ci_high",
                                            "seed_std", "seeds", "p_value"])  # fmt: skip
        frame["p_holm"] = holm(frame["p_value"]) if len(frame) else []
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def interval_table(
    observed: np.ndarray, replicates: np.ndarray, models: Sequence[tuple[str, str, int]], draws: np.ndarray,
    level: float = 0.95, metric_names: Sequence[str] = METRICS,
) -> pd.DataFrame:  # fmt: skip
    """Per (rule, loss): mean over seeds, its two-level interval and the two spreads, all in %.

    ``models`` names the M models as (rule, loss, seed). ``test_se`` is the bootstrap standard error of one
    model's metric (root mean square over seeds); ``seed_std`` the standard deviation over seeds (NaN for one seed);
    ``dominant_spread`` says which is larger.
    """
    rows = []
    for rule in dict.fromkeys(rule for rule, _, _ in models):
        ruled = [m for m, model in enumerate(models) if model[0] == rule]
        losses, seeds, groups = seed_groups([models[m][1:] for m in ruled])
        for loss, group in zip(losses, groups, strict=True):
            index = np.asarray(ruled)[group]
            combined = two_level(100 * observed[index], 100 * replicates[:, index], draws)
            low, high = percentile_interval(combined.replicates, level)
            for k, metric in enumerate(metric_names):
                seed_std, test_se = combined.seed_std[k], combined.test_se[k]
                dominant = "" if np.isnan(seed_std) else ("seeds" if seed_std > test_se else "test set")
                rows.append({"rule": rule, "loss": loss, "metric": metric, "estimate": combined.estimate[k],
                             "ci_low": low[k], "ci_high": high[k], "test_se": test_se, "seed_std": seed_std,
                             "seeds": len(seeds), "dominant_spread": dominant})  # fmt: skip
    return pd.DataFrame(rows)


def class_interval_table(
    observed: np.ndarray, replicates: np.ndarray, models: Sequence[tuple[str, int]], class_names: Sequence[str],
    metric: str, draws: np.ndarray, level: float = 0.95,
) -> pd.DataFrame:  # fmt: skip
    """Per loss and class: mean over seeds of a per-class metric (observed (M, C), replicates (B, M, C)), its
    two-level interval and the seed standard deviation, in %."""
    losses, seeds, groups = seed_groups(models)
    rows = []
    for loss, group in zip(losses, groups, strict=True):
        combined = two_level(100 * observed[group], 100 * replicates[:, group], draws)
        low, high = percentile_interval(combined.replicates, level)
        for c, name in enumerate(class_names):
            rows.append({"metric": metric, "loss": loss, "class": name, "estimate": combined.estimate[c],
                         "ci_low": low[c], "ci_high": high[c], "seed_std": combined.seed_std[c],
                         "seeds": len(seeds)})  # fmt: skip
    return pd.DataFrame(rows)


def rare_classes(train_counts: pd.Series) -> list[int]:
    """Positions of the rarest third of the classes by training count (stable order on ties)."""
    order = np.argsort(train_counts.to_numpy(), kind="stable")
    return sorted(order[: len(train_counts) // 3].tolist())
