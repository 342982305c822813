"""Explanations scored against reference maps: relevance mass inside the class region, and the pointing game.

For one explanation (a relevance map of one class score on one patch) and the class's region in the patch's
reference map:

* ``relevance_mass``: the share of the positive relevance that falls inside the region (Arras et al.'s
  relevance mass accuracy); an explanation that ignores where the class is scores the region's share of
  the patch, ``region_share``, on average;
* ``pointing_hit``: whether the most relevant pixel lies inside the region (Zhang et al.'s pointing game,
  without tolerance); a random pixel hits with probability ``region_share``.

Summaries give both per loss and class, and per loss over all classes, with percentile bootstrap intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benloss.evaluation.bootstrap import bootstrap_mean_ci
from benloss.facts.nomenclature import classes

#: Value of a reference-map pixel that belongs to no BigEarthNet-19 class.
NO_CLASS = 255
#: One row per explanation (``explain/lrp_examples.csv``).
EXAMPLE_COLUMNS = ("loss", "patch", "class", "score", "relevance_mass", "region_share", "pointing_hit")
#: One row per loss and class, plus a row per loss with class ``all`` (``tables/lrp_scores.csv``).
SUMMARY_COLUMNS = ("loss", "class", "explanations", "relevance_mass", "relevance_mass_low", "relevance_mass_high",
                   "region_share", "mass_minus_share", "mass_minus_share_low", "mass_minus_share_high",
                   "pointing_game", "pointing_game_low", "pointing_game_high")  # fmt: skip
ALL_CLASSES = "all"


def region_scores(heatmap: np.ndarray, region: np.ndarray) -> dict:
    """Relevance mass inside ``region`` (NaN without positive relevance), the region's share, the pointing game."""
    positive = np.clip(heatmap, 0, None)
    total = positive.sum()
    return {
        "relevance_mass": float(positive[region].sum() / total) if total > 0 else float("nan"),
        "region_share": float(region.mean()),
        "pointing_hit": bool(region.flat[int(np.argmax(heatmap))]),
    }


def mean_ci_or_nan(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean and 95 % percentile bootstrap interval (``bootstrap_mean_ci``); NaNs for no values."""
    return bootstrap_mean_ci(values, n_boot=n_boot, seed=seed) if len(values) else (float("nan"),) * 3


def _summary_row(loss: str, name: str, group: pd.DataFrame, n_boot: int, seed: int) -> dict:
    scored = group.dropna(subset=["relevance_mass"])  # explanations without positive relevance have no mass
    mass = mean_ci_or_nan(scored["relevance_mass"].to_numpy(), n_boot, seed)
    gain = mean_ci_or_nan((scored["relevance_mass"] - scored["region_share"]).to_numpy(), n_boot, seed)
    hits = mean_ci_or_nan(group["pointing_hit"].to_numpy(dtype=np.float64), n_boot, seed)
    return dict(zip(SUMMARY_COLUMNS, (loss, name, len(group), *mass, float(group["region_share"].mean()), *gain,
                                      *hits), strict=True))  # fmt: skip


def summarise(examples: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per loss: a row per class (official order) and an ``all`` row, means with 95 % bootstrap intervals."""
    rows = []
    for loss, per_loss in examples.groupby("loss", sort=False):
        for name in classes():
            group = per_loss[per_loss["class"] == name]
            if len(group):
                rows.append(_summary_row(loss, name, group, n_boot, seed))
        rows.append(_summary_row(loss, ALL_CLASSES, per_loss, n_boot, seed))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def stratified_sample(labels: np.ndarray, maps: np.ndarray, per_class: int, seed: int = 0) -> list[tuple[int, int]]:
    """(row, class) pairs: for every class, up to ``per_class`` rows drawn without replacement among the patches
    that carry the class both in their labels and in their reference map; fewer where fewer exist.

    Each class draws from a generator of its own, seeded by (seed, class), so a class's rows do not depend on
    the other classes, and the draw reads only labels and maps: every loss is scored on the same pairs.
    Candidates are visited in a random order until enough carry the class in their map, so a large test
    split is not read whole.
    """
    pairs = []
    for c in range(len(classes())):
        rng = np.random.default_rng([seed, c])
        chosen = []
        for row in rng.permutation(np.flatnonzero(labels[:, c].astype(bool))):
            if len(chosen) == per_class:
                break
            if (maps[row] == c).any():
                chosen.append(int(row))
        pairs += [(row, c) for row in sorted(chosen)]
    return pairs
