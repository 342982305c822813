"""The bootstrap step: every evaluated model's test predictions under each rule, and its ranking scores,
bootstrapped together, by spatial blocks of test patches and over seeds, into Table 1's intervals and the pairwise
differences between losses (the statistics are in ``bootstrap``, ``blocks`` and ``ranking``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from benloss.atomic import atomic_outputs
from benloss.data.encoded import read_patch_names
from benloss.errors import InputError
from benloss.evaluation.blocks import block_ids, block_sizes
from benloss.evaluation.bootstrap import (
    CHUNK,
    METRICS,
    N_BOOT,
    PAIRWISE_METRICS,
    RANKING_RULE,
    RULES,
    bootstrap_metrics,
    class_f1_bootstrap,
    class_interval_table,
    interval_table,
    metrics_from_sums,
    pairwise_table,
    per_image_counts,
    rare_classes,
    replicate_counts,
    seed_draws,
    seed_groups,
)
from benloss.evaluation.metrics import defined_mean
from benloss.evaluation.ranking import (
    RANKING_METRICS,
    average_precision,
    block_ranking_parts,
    ranking_summary,
    weighted_ranking_parts,
)
from benloss.evaluation.results import by_model
from benloss.facts.loss_catalog import loss_info
from benloss.facts.nomenclature import classes
from benloss.facts.patch_names import GRID_SIDE
from benloss.layout import BOOTSTRAP_FILES, encoded_array
from benloss.training.losses import build_rule

log = logging.getLogger(__name__)


def load_predictions(
    metrics: Sequence[Path], test_scores: Sequence[Path], runs: Sequence[Path], labels: np.ndarray
) -> tuple[list[tuple[str, str, int]], list[np.ndarray], list[np.ndarray]]:
    """Every evaluated model's test predictions under each of ``RULES`` and its ranking scores, checked against its
    ``metrics.json``. ``metrics``, ``test_scores`` and ``runs`` (the models' ``run.json``) hold one file per model.

    Returns (rule, loss, seed) per prediction set, the predictions, and one ranking-score array per model (in the
    order of the own-rule entries)."""
    scores_of = {(loss, seed): path for loss, seed, path in by_model(test_scores)}
    run_of = {(loss, seed): path for loss, seed, path in by_model(runs)}
    models, predictions, rankings = [], [], []
    for loss, seed, metrics_path in by_model(metrics):
        given = (("test scores", scores_of), ("run.json", run_of))
        missing = [kind for kind, files in given if (loss, seed) not in files]
        if missing:
            raise InputError(f"{metrics_path}: no {' and no '.join(missing)} given for {loss} seed {seed}")
        document = json.loads(metrics_path.read_text())
        scores = np.load(scores_of[loss, seed])
        if scores.shape != labels.shape:
            raise InputError(f"{scores_of[loss, seed]}: scores {scores.shape} but test labels {labels.shape}")
        params = json.loads(run_of[loss, seed].read_text()).get("loss_params", {})
        # The decision rules exactly as ``benloss evaluate`` applied them.
        rule = build_rule(loss, labels.shape[1], document.get("own_rule_parameters", {}), **params)
        logits = torch.from_numpy(scores)
        keys = (("calibrated", "thresholds"), ("calibrated_per_class", "thresholds_per_class"))
        thresholds = {name: torch.tensor([np.inf if t is None else t for t in document[key]]) for name, key in keys}
        found = {"own": rule.predict(logits), **{name: rule.predict(logits, t) for name, t in thresholds.items()}}
        for name in RULES:
            key = "own_rule" if name == "own" else name
            pred = found[name].numpy()
            sample_f1 = metrics_from_sums(per_image_counts(pred, labels).sum(0, dtype=np.float64),
                                          labels.sum(0).astype(float), np.array([], int))[2]  # fmt: skip
            if not np.isclose(sample_f1, document[key]["f1_samples"], atol=1e-6):
                raise InputError(f"{metrics_path}: predictions give {key} sample F1 {sample_f1:.6f}, "
                                 f"metrics.json {document[key]['f1_samples']:.6f}")  # fmt: skip
            models.append((name, loss, seed))
            predictions.append(pred)
        rankings.append(rule.ranking_scores(logits).double().numpy())
    return models, predictions, rankings


#: Largest blocks × positives for which the ranking bootstrap works from per-block tallies (about 16 bytes each);
#: beyond it (many small blocks of a large test set) it reads every image's weight per replicate instead.
BLOCK_TALLY_LIMIT = 10**8


@dataclass(frozen=True)
class RankingBootstrap:
    """The threshold-free metrics of every model and their replicates, paired with ``bootstrap_metrics``'s."""

    observed: np.ndarray  # (M, 3) RANKING_METRICS
    replicates: np.ndarray  # (B, M, 3)
    class_ap: np.ndarray  # (M, C) AP per class (NaN without positives)
    class_ap_replicates: np.ndarray  # (B, M, C)


def bootstrap_ranking(
    rankings: Sequence[np.ndarray], labels: np.ndarray, blocks: np.ndarray, n_boot: int, seed: int
) -> RankingBootstrap:
    """RANKING_METRICS and per-class AP of every model, on the same resamples of the blocks as
    ``bootstrap_metrics`` (replicate b draws with the generator seeded [seed, b]), so all metrics are paired."""
    observed = np.stack([[ranking_summary(r, labels)[name] for name in RANKING_METRICS] for r in rankings])
    class_ap = np.stack([average_precision(r, labels) for r in rankings])
    n_blocks = int(blocks.max()) + 1
    by_block = n_blocks * int(labels.sum()) <= BLOCK_TALLY_LIMIT
    counts = replicate_counts(n_blocks, range(n_boot), seed)
    replicates = np.empty((n_boot, len(rankings), len(RANKING_METRICS)))
    class_replicates = np.empty((n_boot, *class_ap.shape))
    for m, ranking in enumerate(tqdm(rankings, desc="bootstrap (ranking)", unit="model", disable=len(rankings) < 4)):
        if by_block:
            ap, micro, area = block_ranking_parts(ranking, labels, blocks, counts)
        else:
            parts = [weighted_ranking_parts(ranking, labels, counts[start : start + CHUNK][:, blocks])
                     for start in range(0, n_boot, CHUNK)]  # fmt: skip
            ap, micro, area = (np.concatenate(part) for part in zip(*parts, strict=True))
        replicates[:, m] = np.stack([defined_mean(ap), micro, defined_mean(area)], axis=1)
        class_replicates[:, m] = ap
    return RankingBootstrap(observed, replicates, class_ap, class_replicates)


def write_bootstrap(
    metrics: Sequence[Path], test_scores: Sequence[Path], runs: Sequence[Path], encoded: Path, class_counts: Path,
    outdir: Path, n_boot: int = N_BOOT, seed: int = 0, block: int = GRID_SIDE,
) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Write ``intervals.csv`` (every rule, loss and metric), ``pairwise.csv`` (PAIRWISE_METRICS, every pair) and
    ``per_class_intervals.csv`` (F1 and AP per loss and class), resampling blocks of ``block`` × ``block`` patch
    positions of one acquisition."""
    labels = np.load(Path(encoded) / encoded_array("test", "labels")).astype(bool)
    names = read_patch_names(encoded, "test")
    if len(names) != len(labels):
        raise InputError(f"{encoded}: {len(names)} test patch names but {len(labels)} test label rows")
    blocks = block_ids(names, block)
    counts = pd.read_csv(class_counts).set_index("class")["train"].loc[list(classes())]
    models, predictions, rankings = load_predictions(metrics, test_scores, runs, labels)
    own = [i for i, (rule, _, _) in enumerate(models) if rule == "own"]
    own_models = [models[i][1:] for i in own]
    losses, seeds, _ = seed_groups(own_models)
    sizes = block_sizes(blocks)
    log.info("bootstrap: %d losses × %d seeds, %d test images in %d blocks of %d × %d positions (median %d "
             "images), %d replicates", len(losses), len(seeds), len(labels), len(sizes), block, block,
             np.median(sizes), n_boot)  # fmt: skip
    draws = seed_draws(n_boot, len(seeds), seed)
    observed, replicates = bootstrap_metrics(predictions, labels, rare_classes(counts), n_boot, seed, blocks=blocks)
    ranking = bootstrap_ranking(rankings, labels, blocks, n_boot, seed)
    ranked, ranked_replicates = ranking.observed, ranking.replicates
    ranking_models = [(RANKING_RULE, loss, model_seed) for loss, model_seed in own_models]
    intervals = pd.concat([interval_table(observed, replicates, models, draws),
                           interval_table(ranked, ranked_replicates, ranking_models, draws,
                                          metric_names=RANKING_METRICS)], ignore_index=True)  # fmt: skip
    intervals["loss"] = [loss_info(loss).abbreviation for loss in intervals["loss"]]
    # Loss comparisons: the own rule's metrics and the ranking metrics of every model, paired over seeds.
    names_of = (*METRICS, *RANKING_METRICS)
    keep = [names_of.index(metric) for metric, _ in PAIRWISE_METRICS]
    combined = np.concatenate([observed[own], ranked], axis=1)[:, keep]
    combined_replicates = np.concatenate([replicates[:, own], ranked_replicates], axis=2)[:, :, keep]
    abbreviated = [(loss_info(loss).abbreviation, model_seed) for loss, model_seed in own_models]
    pairwise = pairwise_table(combined, combined_replicates, abbreviated, [name for _, name in PAIRWISE_METRICS], draws)
    own_predictions = [predictions[i] for i in own]
    class_f1, class_f1_replicates = class_f1_bootstrap(own_predictions, labels, n_boot, seed, blocks)
    per_class = pd.concat([
        class_interval_table(class_f1, class_f1_replicates, abbreviated, classes(), "f1", draws),
        class_interval_table(ranking.class_ap, ranking.class_ap_replicates, abbreviated, classes(), "ap", draws),
    ], ignore_index=True)  # fmt: skip
    outdir = Path(outdir)
    outputs = [outdir / BOOTSTRAP_FILES[role] for role in ("intervals", "pairwise", "per_class_intervals")]
    with atomic_outputs(*outputs) as (intervals_path, pairwise_path, per_class_path):
        intervals.to_csv(intervals_path, index=False)
        pairwise.to_csv(pairwise_path, index=False)
        per_class.to_csv(per_class_path, index=False)
    log.info("intervals and pairwise differences written to %s", outdir)
    return {"intervals": intervals, "pairwise": pairwise, "per_class_intervals": per_class}
