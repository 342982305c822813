"""The bootstrap step: every evaluated model's test predictions under each rule, and its ranking scores,
bootstrapped together into Table 1's intervals and the pairwise differences between losses (the statistics are
in ``bootstrap`` and ``ranking``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from benloss.atomic import atomic_outputs
from benloss.errors import InputError
from benloss.evaluation.bootstrap import (
    CHUNK,
    METRICS,
    N_BOOT,
    PAIRWISE_METRICS,
    RANKING_RULE,
    RULES,
    bootstrap_metrics,
    interval_table,
    metrics_from_sums,
    pairwise_table,
    per_image_counts,
    rare_classes,
    replicate_weights,
)
from benloss.evaluation.ranking import RANKING_METRICS, ranking_from_weights, ranking_summary
from benloss.evaluation.results import by_model
from benloss.facts.loss_catalog import loss_info
from benloss.facts.nomenclature import classes
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
                                          labels.sum(0).astype(float), len(labels), np.array([], int))[2]  # fmt: skip
            if not np.isclose(sample_f1, document[key]["f1_samples"], atol=1e-6):
                raise InputError(f"{metrics_path}: predictions give {key} sample F1 {sample_f1:.6f}, "
                                 f"metrics.json {document[key]['f1_samples']:.6f}")  # fmt: skip
            models.append((name, loss, seed))
            predictions.append(pred)
        rankings.append(rule.ranking_scores(logits).double().numpy())
    return models, predictions, rankings


def bootstrap_ranking(
    rankings: Sequence[np.ndarray], labels: np.ndarray, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """RANKING_METRICS of every model (M, 3) and their replicates (B, M, 3), on the same resamples as
    ``bootstrap_metrics`` (replicate b draws with the generator seeded [seed, b]), so all metrics are paired."""
    observed = np.stack([[ranking_summary(r, labels)[name] for name in RANKING_METRICS] for r in rankings])
    replicates = np.empty((n_boot, len(rankings), len(RANKING_METRICS)))
    quick = n_boot * labels.size * len(rankings) < 10**7
    chunks = range(0, n_boot, CHUNK)
    for start in tqdm(chunks, desc="bootstrap (ranking)", unit="chunk", mininterval=5, disable=quick):
        weights = replicate_weights(len(labels), range(start, min(start + CHUNK, n_boot)), seed)
        for m, ranking in enumerate(rankings):
            replicates[start : start + len(weights), m] = ranking_from_weights(ranking, labels, weights)
    return observed, replicates


def write_bootstrap(
    metrics: Sequence[Path], test_scores: Sequence[Path], runs: Sequence[Path], encoded: Path, class_counts: Path,
    outdir: Path, n_boot: int = N_BOOT, seed: int = 0,
) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Write ``intervals.csv`` (every rule, loss and metric) and ``pairwise.csv`` (PAIRWISE_METRICS, every pair)."""
    labels = np.load(Path(encoded) / encoded_array("test", "labels")).astype(bool)
    counts = pd.read_csv(class_counts).set_index("class")["train"].loc[list(classes())]
    models, predictions, rankings = load_predictions(metrics, test_scores, runs, labels)
    log.info("bootstrap: %d models, %d test images, %d replicates", len(rankings), len(labels), n_boot)
    observed, replicates = bootstrap_metrics(predictions, labels, rare_classes(counts), n_boot, seed)
    ranked, ranked_replicates = bootstrap_ranking(rankings, labels, n_boot, seed)
    own = [i for i, (rule, _, _) in enumerate(models) if rule == "own"]
    ranking_models = [(RANKING_RULE, loss, model_seed) for _, loss, model_seed in (models[i] for i in own)]
    intervals = pd.concat([interval_table(observed, replicates, models),
                           interval_table(ranked, ranked_replicates, ranking_models, metric_names=RANKING_METRICS)],
                          ignore_index=True)  # fmt: skip
    intervals["loss"] = [loss_info(loss).abbreviation for loss in intervals["loss"]]
    # Loss-level values: the mean over seeds of the own rule's metrics and of the ranking metrics.
    losses = list(dict.fromkeys(models[i][1] for i in own))
    groups = [[k for k, i in enumerate(own) if models[i][1] == loss] for loss in losses]
    own_observed, own_replicates = observed[own], replicates[:, own]
    combined = np.concatenate([own_observed, ranked], axis=1)
    combined_replicates = np.concatenate([own_replicates, ranked_replicates], axis=2)
    names = (*METRICS, *RANKING_METRICS)
    keep = [names.index(metric) for metric, _ in PAIRWISE_METRICS]
    loss_observed = np.stack([combined[g].mean(0) for g in groups])[:, keep]
    loss_replicates = np.stack([combined_replicates[:, g].mean(1) for g in groups], axis=1)[:, :, keep]
    pairwise = pairwise_table(loss_observed, loss_replicates, [loss_info(loss).abbreviation for loss in losses],
                              [name for _, name in PAIRWISE_METRICS])  # fmt: skip
    outdir = Path(outdir)
    outputs = (outdir / BOOTSTRAP_FILES["intervals"], outdir / BOOTSTRAP_FILES["pairwise"])
    with atomic_outputs(*outputs) as (intervals_path, pairwise_path):
        intervals.to_csv(intervals_path, index=False)
        pairwise.to_csv(pairwise_path, index=False)
    log.info("intervals and pairwise differences written to %s", outdir)
    return {"intervals": intervals, "pairwise": pairwise}
