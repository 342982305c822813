"""Coverage of the two-level intervals in simulation, where the truth is known.

Test sets are drawn block by block from a population in which patches of one block share land cover and the
models' errors (a block effect on the labels' log-odds and on every model's scores, half of it shared by the
losses); each loss has a true separation of its classes, each seed adds a seed effect (correlated across losses,
as a shared seed is) and every model its own errors per image. The truth of a loss is the population metric
averaged over seed effects (Gauss–Hermite quadrature over a 60,000-image population); the truth of one trained
model is the population metric at its own seed effect. About 95 % of 95 % intervals must contain the truth, for the
macro, micro and sample F1 of one loss and for the difference between two, with one seed (truth: the model) and
three (truth: the loss); the same intervals with independent resampling, or without the seed level, must not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from benloss.evaluation.bootstrap import (
    METRICS,
    bootstrap_metrics,
    metrics_from_sums,
    per_image_counts,
    percentile_interval,
    seed_draws,
    two_level,
)

CHECKED = ("f1_macro", "f1_micro", "f1_samples")
PREVALENCE = np.array([0.3, -0.4, -1.0, -1.8])  # log-odds of the four classes: 57 % to 14 %
SEPARATION = {"A": 1.3, "B": 1.0}  # each loss's true separation of positives from negatives
BLOCK_LABELS, BLOCK_SCORES = 1.2, 1.0  # block effects on the labels' log-odds and on every model's scores
SEED_SD, SEED_SHARED = 0.25, 0.5  # seed effect on the separation; its correlation across losses
N_BLOCKS, BLOCK_SIZE = 100, 6
REPEATS, N_BOOT = 300, 500


@dataclass
class Population:
    """Images drawn block by block, with everything a model's scores need apart from its own errors."""

    labels: np.ndarray  # (N, C) bool
    shift: dict[str, np.ndarray]  # per loss (N, C): the block's effect on the scores, half shared by the losses
    blocks: np.ndarray  # (N,)


def draw(rng: np.random.Generator, n_blocks: int) -> Population:
    size = (n_blocks, len(PREVALENCE))
    block_labels, shared = rng.standard_normal(size), rng.standard_normal(size)
    blocks = np.repeat(np.arange(n_blocks), BLOCK_SIZE)
    logits = PREVALENCE + BLOCK_LABELS * block_labels[blocks]
    labels = rng.random(logits.shape) < 1 / (1 + np.exp(-logits))
    shift = {loss: BLOCK_SCORES * np.sqrt(0.5) * (shared + rng.standard_normal(size))[blocks] for loss in SEPARATION}
    return Population(labels, shift, blocks)


def predict(rng: np.random.Generator, population: Population, loss: str, effect: float) -> np.ndarray:
    """A model of ``loss`` with seed effect ``effect``: its own errors per image are drawn here."""
    signed = np.where(population.labels, 1.0, -1.0)
    noise = rng.standard_normal(population.labels.shape)
    return signed * (SEPARATION[loss] + effect) + population.shift[loss] + noise > 0


def metrics_of(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    sums = per_image_counts(predictions, labels).sum(0, dtype=np.float64)
    return metrics_from_sums(sums, labels.sum(0).astype(float), np.array([], int))


def population_metric(loss: str, effect: float, population: Population) -> np.ndarray:
    """METRICS of a model of ``loss`` with seed effect ``effect`` on the population (its errors drawn anew)."""
    rng = np.random.default_rng(12345)
    return metrics_of(predict(rng, population, loss, effect), population.labels)


@pytest.fixture(scope="module")
def population() -> Population:
    return draw(np.random.default_rng(2024), 7_500)  # 60,000 images


@pytest.fixture(scope="module")
def loss_truth(population) -> dict[str, np.ndarray]:
    """Each loss's metrics averaged over seed effects, by Gauss–Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(9)
    weights = weights / weights.sum()
    return {loss: sum(w * population_metric(loss, SEED_SD * x, population) for x, w in zip(nodes, weights, strict=True))
            for loss in SEPARATION}  # fmt: skip


def seed_effects(rng: np.random.Generator, n_seeds: int) -> dict[str, np.ndarray]:
    shared = rng.standard_normal(n_seeds)
    own = {loss: rng.standard_normal(n_seeds) for loss in SEPARATION}
    mix = np.sqrt(SEED_SHARED)
    return {loss: SEED_SD * (mix * shared + np.sqrt(1 - SEED_SHARED) * own[loss]) for loss in SEPARATION}


def coverage(
    n_seeds: int, population: Population, loss_truth: dict[str, np.ndarray], spatial: bool = True,
    seed_level: bool = True,
) -> dict[str, float]:  # fmt: skip
    """Share of intervals containing the truth, per checked metric of loss A and of the difference A − B."""
    rng = np.random.default_rng(n_seeds)
    checked = [METRICS.index(metric) for metric in CHECKED]
    hits = {f"{kind} {metric}": 0 for kind in ("A", "A - B") for metric in CHECKED}
    for repeat in range(REPEATS):
        sample = draw(rng, N_BLOCKS)
        effects = seed_effects(rng, n_seeds)
        predictions = [predict(rng, sample, loss, e) for loss in SEPARATION for e in effects[loss]]
        blocks = sample.blocks if spatial else None
        observed, replicates = bootstrap_metrics(predictions, sample.labels, n_boot=N_BOOT, seed=repeat, blocks=blocks)
        observed, replicates = observed[:, checked], replicates[:, :, checked]
        draws = seed_draws(N_BOOT, n_seeds if seed_level else 1, repeat)
        if n_seeds == 1:  # the truth of one trained model
            truth = {loss: population_metric(loss, effects[loss][0], population)[checked] for loss in SEPARATION}
        else:
            truth = {loss: loss_truth[loss][checked] for loss in SEPARATION}
        a, b = slice(0, n_seeds), slice(n_seeds, 2 * n_seeds)
        combined = {
            "A": (two_level(observed[a], replicates[:, a], draws), truth["A"]),
            "A - B": (two_level(observed[a] - observed[b], replicates[:, a] - replicates[:, b], draws),
                      truth["A"] - truth["B"]),
        }  # fmt: skip
        for kind, (result, true) in combined.items():
            low, high = percentile_interval(result.replicates)
            for k, metric in enumerate(CHECKED):
                hits[f"{kind} {metric}"] += bool(low[k] <= true[k] <= high[k])
    return {key: value / REPEATS for key, value in hits.items()}


#: The central 99.9 % range of the coverage of REPEATS intervals of true coverage 95 %.
TOLERANCE = np.array(stats.binom.interval(0.999, REPEATS, 0.95)) / REPEATS


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_two_level_intervals_cover_the_truth_95_percent_of_the_time(n_seeds, population, loss_truth):
    found = coverage(n_seeds, population, loss_truth)
    outside = {key: value for key, value in found.items() if not TOLERANCE[0] <= value <= TOLERANCE[1]}
    assert outside == {}, f"coverage outside {TOLERANCE} for {n_seeds} seed(s): {found}"


def test_independent_resampling_or_a_missing_seed_level_undercover(population, loss_truth):
    """The same data, resampled image by image, or with three seeds but no seed level: the intervals are too
        narrow, so the coverage test above can fail. (A difference between losses is far less affected by independent
    resampling here: half of each block's effect on the scores is shared by both losses and cancels.)"""
    independent = coverage(1, population, loss_truth, spatial=False)
    assert max(independent[f"A {metric}"] for metric in CHECKED) < TOLERANCE[0] - 0.03, independent
    no_seed_level = coverage(3, population, loss_truth, seed_level=False)
    assert max(no_seed_level.values()) < TOLERANCE[0] - 0.15, no_seed_level
