"""The bootstrap step: every evaluated model's test predictions under both rules, bootstrapped together into
Table 1's intervals and the pairwise differences between losses (the statistics are in ``bootstrap``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benloss.atomic import atomic_outputs
from benloss.errors import InputError
from benloss.evaluation.bootstrap import (
    METRICS,
    N_BOOT,
    PAIRWISE_METRICS,
    bootstrap_metrics,
    interval_table,
    metrics_from_sums,
    pairwise_table,
    per_image_counts,
    rare_classes,
)
from benloss.evaluation.results import by_model
from benloss.facts.loss_catalog import loss_info
from benloss.facts.nomenclature import classes
from benloss.layout import BOOTSTRAP_FILES, encoded_array
from benloss.training.losses import build_loss

log = logging.getLogger(__name__)


def load_predictions(
    metrics: Sequence[Path], test_scores: Sequence[Path], runs: Sequence[Path], labels: np.ndarray
) -> tuple[list[tuple[str, str, int]], list[np.ndarray]]:
    """Test predictions of every evaluated model under both rules, checked against its ``metrics.json``.

    ``metrics``, ``test_scores`` and ``runs`` (the models' ``run.json``) hold one file per model each."""
    scores_of = {(loss, seed): path for loss, seed, path in by_model(test_scores)}
    run_of = {(loss, seed): path for loss, seed, path in by_model(runs)}
    models, predictions = [], []
    for loss, seed, metrics_path in by_model(metrics):
        missing = [
            kind for kind, files in (("test scores", scores_of), ("run.json", run_of)) if (loss, seed) not in files
        ]
        if missing:
            raise InputError(f"{metrics_path}: no {' and no '.join(missing)} given for {loss} seed {seed}")
        document = json.loads(metrics_path.read_text())
        scores = np.load(scores_of[loss, seed])
        if scores.shape != labels.shape:
            raise InputError(f"{scores_of[loss, seed]}: scores {scores.shape} but test labels {labels.shape}")
        params = json.loads(run_of[loss, seed].read_text()).get("loss_params", {})
        # The decision rules exactly as ``benloss evaluate`` applied them (predict does not depend on class counts).
        loss_module = build_loss(loss, class_frequencies=np.ones(labels.shape[1]), **params)
        thresholds = torch.tensor([np.inf if t is None else t for t in document["thresholds"]])
        own = loss_module.predict(torch.from_numpy(scores)).numpy()
        calibrated = loss_module.predict(torch.from_numpy(scores), thresholds).numpy()
        for name, pred, key in (("own", own, "own_rule"), ("calibrated", calibrated, "calibrated")):
            expected = document[key]["f1_samples"]
            found = metrics_from_sums(per_image_counts(pred, labels).sum(0, dtype=np.float64),
                                      labels.sum(0).astype(float), len(labels), np.array([], int))[2]  # fmt: skip
            if not np.isclose(found, expected, atol=1e-6):
                raise InputError(f"{metrics_path}: predictions give {key} sample F1 {found:.6f}, "
                                 f"metrics.json {expected:.6f}")  # fmt: skip
            models.append((name, loss, seed))
            predictions.append(pred)
    return models, predictions


def write_bootstrap(
    metrics: Sequence[Path], test_scores: Sequence[Path], runs: Sequence[Path], encoded: Path, class_counts: Path,
    outdir: Path, n_boot: int = N_BOOT, seed: int = 0,
) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Write ``intervals.csv`` (every model group and metric) and ``pairwise.csv`` (own-rule F1 pairs)."""
    labels = np.load(Path(encoded) / encoded_array("test", "labels")).astype(bool)
    counts = pd.read_csv(class_counts).set_index("class")["train"].loc[list(classes())]
    models, predictions = load_predictions(metrics, test_scores, runs, labels)
    log.info("bootstrap: %d models, %d test images, %d replicates", len(models), len(labels), n_boot)
    observed, replicates = bootstrap_metrics(predictions, labels, rare_classes(counts), n_boot, seed)
    intervals = interval_table(observed, replicates, models)
    intervals["loss"] = [loss_info(loss).abbreviation for loss in intervals["loss"]]
    own = [i for i, (rule, _, _) in enumerate(models) if rule == "own"]
    losses = list(dict.fromkeys(models[i][1] for i in own))
    groups = [[i for i in own if models[i][1] == loss] for loss in losses]
    loss_observed = np.stack([observed[g].mean(0) for g in groups])
    loss_replicates = np.stack([replicates[:, g].mean(1) for g in groups], axis=1)
    keep = [METRICS.index(metric) for metric, _ in PAIRWISE_METRICS]
    names = [loss_info(loss).abbreviation for loss in losses]
    pairwise = pairwise_table(
        loss_observed[:, keep], loss_replicates[:, :, keep], names, [name for _, name in PAIRWISE_METRICS]
    )
    outdir = Path(outdir)
    outputs = (outdir / BOOTSTRAP_FILES["intervals"], outdir / BOOTSTRAP_FILES["pairwise"])
    with atomic_outputs(*outputs) as (intervals_path, pairwise_path):
        intervals.to_csv(intervals_path, index=False)
        pairwise.to_csv(pairwise_path, index=False)
    log.info("intervals and pairwise differences written to %s", outdir)
    return {"intervals": intervals, "pairwise": pairwise}
