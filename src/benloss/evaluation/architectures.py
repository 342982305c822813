"""The comparison across architectures: Table 1's headline rows per architecture, the losses' ranking on each, and
how well two architectures' rankings agree (Kendall's τ-b with a bootstrap interval, and whether the winner stays).

Every architecture is bootstrapped on the same spatial blocks with the same ``n_boot`` and ``seed``, so replicate
``b`` resamples the same test images for all of them (``bootstrap.replicate_indices``): the test-set resamples pair
across architectures as they pair across losses, and a replicate's τ compares two rankings measured on one
resample. Seeds pair across the losses of one architecture (same initial weights, same batch order) but not across
architectures, so each architecture draws its own seed-level t (``bootstrap.seed_draws`` with the stream of its
place in the registry; K-Branch's is the one its own bootstrap uses). Within an architecture the seed-level term is
``two_level``'s, t_b σ̂ / √S with one t_b shared by its losses, so it moves them together; its ranks change with the
seeds only as far as the losses' σ̂ differ.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benloss.architectures import ARCHITECTURE_IDS, architecture
from benloss.atomic import atomic_outputs
from benloss.data.encoded import read_patch_names
from benloss.errors import InputError
from benloss.evaluation.blocks import block_ids
from benloss.evaluation.bootstrap import (
    METRICS,
    N_BOOT,
    RANKING_RULE,
    SEED_STREAM,
    bootstrap_metrics,
    percentile_interval,
    seed_draws,
    seed_groups,
    two_level,
)
from benloss.evaluation.comparison import bootstrap_ranking, load_predictions
from benloss.evaluation.ranking import RANKING_METRICS
from benloss.evaluation.results import by_model
from benloss.facts.loss_catalog import loss_info
from benloss.facts.patch_names import GRID_SIDE
from benloss.layout import ARCHITECTURE_FILES, architecture_of, encoded_array
from benloss.report.architecture_figure import ranking_figure
from benloss.report.plotting import save
from benloss.report.tables import CALIBRATED_F1, TABLE1_ROWS

log = logging.getLogger(__name__)

#: Table 1's headline rows: its name of each, and the (rule, metric) of the bootstrap it is measured by.
HEADLINE: dict[str, tuple[str, str]] = {
    "F1 samples": ("own", "f1_samples"),
    CALIBRATED_F1: ("calibrated", "f1_samples"),
    "mAP macro": (RANKING_RULE, "map_macro"),
}
assert all(dict(TABLE1_ROWS)[label] == f"{rule}_{metric}" for label, (rule, metric) in HEADLINE.items())

HEADLINE_COLUMNS = ["architecture", "metric", "loss", "mean", "std", "ci_low", "ci_high", "seeds"]
RANKING_COLUMNS = ["architecture", "metric", "loss", "value", "rank", "winner", "p_best"]
AGREEMENT_COLUMNS = ["metric", "architecture_a", "architecture_b", "tau", "ci_low", "ci_high", "winner_a",
                     "winner_b", "same_winner", "winner_agreement"]  # fmt: skip


@dataclass(frozen=True)
class Headline:
    """One architecture's headline metrics per loss, in %, combined over seeds by ``two_level``; arrays over losses
    (L) and the metrics of ``HEADLINE`` (H)."""

    losses: tuple[str, ...]  # abbreviations, catalogue order
    seeds: tuple[int, ...]
    estimate: np.ndarray  # (L, H) mean over seeds
    replicates: np.ndarray  # (B, L, H) paired with every other architecture's
    seed_std: np.ndarray  # (L, H) standard deviation over seeds (NaN for one seed)


def headline_bootstrap(
    metrics: Sequence[Path], test_scores: Sequence[Path], runs: Sequence[Path], labels: np.ndarray,
    blocks: np.ndarray, n_boot: int, seed: int, stream: int = SEED_STREAM,
) -> Headline:  # fmt: skip
    """The headline metrics of one architecture's models (one file per model in each list), bootstrapped on the
    resamples that ``n_boot``, ``seed`` and ``blocks`` fix, with the seed-level draws of ``stream``."""
    models, predictions, rankings = load_predictions(metrics, test_scores, runs, labels)
    thresholded = [m for m, (rule, _, _) in enumerate(models) if rule in {"own", "calibrated"}]
    thresholded_predictions = [predictions[m] for m in thresholded]
    observed, replicates = bootstrap_metrics(thresholded_predictions, labels, (), n_boot, seed, blocks=blocks)
    ranking = bootstrap_ranking(rankings, labels, blocks, n_boot, seed)
    own = [model[1:] for model in models if model[0] == "own"]
    position = {models[m]: row for row, m in enumerate(thresholded)}
    values, value_replicates = [], []
    for rule, metric in HEADLINE.values():
        if rule == RANKING_RULE:
            k = RANKING_METRICS.index(metric)
            values.append(ranking.observed[:, k])
            value_replicates.append(ranking.replicates[:, :, k])
        else:
            rows, k = [position[rule, loss, model_seed] for loss, model_seed in own], METRICS.index(metric)
            values.append(observed[rows, k])
            value_replicates.append(replicates[:, rows, k])
    values, value_replicates = np.stack(values, axis=-1), np.stack(value_replicates, axis=-1)
    losses, seeds, groups = seed_groups(own)
    draws = seed_draws(n_boot, len(seeds), seed, stream)
    combined = [two_level(100 * values[group], 100 * value_replicates[:, group], draws) for group in groups]
    return Headline(
        tuple(loss_info(loss).abbreviation for loss in losses), tuple(seeds),
        np.stack([c.estimate for c in combined]), np.stack([c.replicates for c in combined], axis=1),
        np.stack([c.seed_std for c in combined]),
    )  # fmt: skip


def kendall_tau(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's τ-b between ``x`` and ``y`` over their last axis (the losses), for every leading index: concordant
    minus discordant pairs over the root of the pairs untied in each; NaN where either is all tied or undefined."""
    i, j = np.triu_indices(np.shape(x)[-1], k=1)
    sx, sy = np.sign(x[..., j] - x[..., i]), np.sign(y[..., j] - y[..., i])
    untied = np.sqrt(np.abs(sx).sum(-1) * np.abs(sy).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(untied > 0, (sx * sy).sum(-1) / untied, np.nan)


def ranks(values: np.ndarray) -> np.ndarray:
    """Rank of each value, 1 for the highest; ties share the mean of their ranks."""
    return pd.Series(values).rank(ascending=False, method="average").to_numpy()


def winners(values: np.ndarray) -> np.ndarray:
    """Which entries along the last axis hold the highest value (all of them where several tie); none where a value
    is undefined."""
    defined = ~np.isnan(values).any(-1, keepdims=True)
    return defined & (values == np.nanmax(np.where(defined, values, 0.0), axis=-1, keepdims=True))


def probability_best(replicates: np.ndarray) -> np.ndarray:
    """Per loss, the share of replicates (B, L) in which it holds the highest value; a tie of k losses gives each
    1/k, and replicates where a value is undefined count in no share."""
    best = winners(replicates)
    shares = best / np.maximum(best.sum(-1, keepdims=True), 1)
    return shares.sum(0) / max(int(best.any(-1).sum()), 1)


def headline_table(results: dict[str, Headline], level: float = 0.95) -> pd.DataFrame:
    """Per architecture, headline metric and loss: mean over seeds, seed std, two-level interval and seeds, in %."""
    rows = []
    for arch, result in results.items():
        low, high = percentile_interval(result.replicates, level)
        for h, metric in enumerate(HEADLINE):
            for i, loss in enumerate(result.losses):
                rows.append({"architecture": arch, "metric": metric, "loss": loss, "mean": result.estimate[i, h],
                             "std": result.seed_std[i, h], "ci_low": low[i, h], "ci_high": high[i, h],
                             "seeds": len(result.seeds)})  # fmt: skip
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


def ranking_table(results: dict[str, Headline]) -> pd.DataFrame:
    """Per architecture, headline metric and loss: the value, its rank (1 best, ties averaged), whether it wins and
    its bootstrap probability of being the best (seed draws included)."""
    rows = []
    for arch, result in results.items():
        for h, metric in enumerate(HEADLINE):
            value = result.estimate[:, h]
            rank, best, p_best = ranks(value), winners(value), probability_best(result.replicates[:, :, h])
            for i, loss in enumerate(result.losses):
                rows.append({"architecture": arch, "metric": metric, "loss": loss, "value": value[i],
                             "rank": rank[i], "winner": bool(best[i]), "p_best": p_best[i]})  # fmt: skip
    return pd.DataFrame(rows, columns=RANKING_COLUMNS)


def agreement_table(results: dict[str, Headline], level: float = 0.95) -> pd.DataFrame:
    """Per headline metric and pair of architectures: τ-b between their losses' values, its percentile interval
    from the paired replicates, each one's winner(s), whether they are the same, and the share of replicates in
    which they are."""
    rows = []
    for h, metric in enumerate(HEADLINE):
        for (arch_a, a), (arch_b, b) in itertools.combinations(results.items(), 2):
            low, high = percentile_interval(kendall_tau(a.replicates[:, :, h], b.replicates[:, :, h]), level)
            best_a, best_b = winners(a.estimate[:, h]), winners(b.estimate[:, h])
            replicate_a, replicate_b = winners(a.replicates[:, :, h]), winners(b.replicates[:, :, h])
            defined = replicate_a.any(-1) & replicate_b.any(-1)
            agree = (replicate_a == replicate_b).all(-1)[defined]
            rows.append({"metric": metric, "architecture_a": arch_a, "architecture_b": arch_b,
                         "tau": float(kendall_tau(a.estimate[:, h], b.estimate[:, h])),
                         "ci_low": float(low), "ci_high": float(high),
                         "winner_a": ", ".join(np.asarray(a.losses)[best_a]),
                         "winner_b": ", ".join(np.asarray(b.losses)[best_b]),
                         "same_winner": bool(best_a.any() and (best_a == best_b).all()),
                         "winner_agreement": float(agree.mean()) if len(agree) else np.nan})  # fmt: skip
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def by_architecture(files: Sequence[Path], kind: str) -> dict[str, list[Path]]:
    """The files of each architecture (read from their paths), architectures in registry order."""
    found: dict[str, list[Path]] = {}
    for path in map(Path, files):
        found.setdefault(architecture(architecture_of(path)).id, []).append(path)
    if not found:
        raise InputError(f"no {kind} files given")
    return {arch: found[arch] for arch in ARCHITECTURE_IDS if arch in found}


def check_same_models(metrics: dict[str, list[Path]]) -> None:
    """Refuse architectures that differ in their losses or seeds: the comparison pairs them."""
    (first, first_files), *others = metrics.items()
    expected = seed_groups([(loss, seed) for loss, seed, _ in by_model(first_files)])[:2]
    for arch, files in others:
        found = seed_groups([(loss, seed) for loss, seed, _ in by_model(files)])[:2]
        if found != expected:
            raise InputError(f"every architecture needs the same losses and seeds: {first} has "
                             f"{', '.join(expected[0])} with seeds {expected[1]}, {arch} {', '.join(found[0])} with "
                             f"seeds {found[1]}")  # fmt: skip


def write_architecture_comparison(
    metrics: Sequence[Path], test_scores: Sequence[Path], runs: Sequence[Path], encoded: Path, outdir: Path, *,
    n_boot: int = N_BOOT, seed: int = 0, block: int = GRID_SIDE,
) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Write ``ARCHITECTURE_FILES`` into ``outdir`` from every architecture's evaluations (``metrics.json``,
    ``test_scores.npy``) and ``run.json`` files, with the test labels and patch names of ``encoded``.

    Each architecture is bootstrapped on the same ``block`` × ``block`` blocks with the same ``n_boot`` and
    ``seed``, so its replicates pair with every other's (the module docstring says how). Every architecture must
    have the same losses and seeds."""
    labels = np.load(Path(encoded) / encoded_array("test", "labels")).astype(bool)
    names = read_patch_names(encoded, "test")
    if len(names) != len(labels):
        raise InputError(f"{encoded}: {len(names)} test patch names but {len(labels)} test label rows")
    blocks = block_ids(names, block)
    grouped = {kind: by_architecture(files, kind) for kind, files in
               (("metrics.json", metrics), ("test score", test_scores), ("run.json", runs))}  # fmt: skip
    archs = list(grouped["metrics.json"])
    for kind, files in grouped.items():
        if list(files) != archs:
            raise InputError(f"{kind} files are given for architectures {', '.join(files)}, but metrics.json "
                             f"files for {', '.join(archs)}")  # fmt: skip
    check_same_models(grouped["metrics.json"])
    results = {}
    for arch in archs:
        log.info("architectures: bootstrapping %s, %d replicates", arch, n_boot)
        files = (grouped[kind][arch] for kind in ("metrics.json", "test score", "run.json"))
        stream = SEED_STREAM + ARCHITECTURE_IDS.index(arch)
        results[arch] = headline_bootstrap(*files, labels, blocks, n_boot, seed, stream)
    tables = {"headline": headline_table(results), "ranking": ranking_table(results),
              "agreement": agreement_table(results)}  # fmt: skip
    outputs = [Path(outdir) / ARCHITECTURE_FILES[role] for role in ("headline", "ranking", "agreement", "figure",
                                                                      "figure_pdf")]  # fmt: skip
    with atomic_outputs(*outputs) as (headline_path, ranking_path, agreement_path, png, pdf):
        tables["headline"].to_csv(headline_path, index=False)
        tables["ranking"].to_csv(ranking_path, index=False)
        tables["agreement"].to_csv(agreement_path, index=False)
        save(ranking_figure(tables["ranking"], tables["agreement"]), png, pdf)
    log.info("comparison across %d architectures written to %s", len(archs), outdir)
    return tables
