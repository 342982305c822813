"""The explanation stage end to end: Fig. 1, conservation, ZBox bounds and scores against reference maps."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from benloss.explanation.conservation import CONSERVATION_COLUMNS
from benloss.explanation.explain import explain, relevance
from benloss.explanation.scores import SUMMARY_COLUMNS
from benloss.facts.bands import BANDS, read_band_statistics
from benloss.facts.nomenclature import classes

from .support import random_inputs, trained_like


def test_box_rule_gives_band_specific_relevance(demo_encoded):
    statistics = read_band_statistics(demo_encoded / "band_statistics.csv")
    parts, _ = relevance(trained_like(), random_inputs(2), torch.tensor([2, 3]), statistics)
    for part in parts:  # a flat rule would give every band of a pixel the same value
        assert not torch.allclose(part[:, 0], part[:, 1])


def test_trained_cel_relevance_falls_inside_the_class_regions(trained_demo):
    root, _ = trained_demo
    examples = [{"class": "Mixed forest"}, {"class": "Coniferous forest"}]
    scores = explain([root / "models/cel/seed0/model.pt"], root / "encoded", examples, root, per_class=4, threads=2)
    assert len(scores) >= 20
    detected = scores[scores["score"] > 0]  # classes the model recognises in the patch
    assert len(detected) >= 10
    # Paired over explanations: relevance in the class's region exceeds the region's share of the patch by more
    # than two standard errors (one-sided, about the 2.5 % level), not by a fixed margin tuned to one run.
    excess = detected["relevance_mass"] - detected["region_share"]
    assert excess.mean() > 2 * excess.std(ddof=1) / np.sqrt(len(excess)), excess.describe()
    assert (root / "figures/lrp_heatmaps.png").read_bytes()[:4] == b"\x89PNG"
    assert (root / "figures/lrp_scores.png").read_bytes()[:4] == b"\x89PNG"
    stored = np.load(root / "explain/relevance.npz")
    assert stored["cel_rgb"].shape == (2, 120, 120) and stored["cel_10m"].shape == (2, 4, 120, 120)
    conservation = pd.read_csv(root / "explain/conservation.csv")
    assert list(conservation.columns) == list(CONSERVATION_COLUMNS) and len(conservation) == len(scores) + 2
    assert set(conservation["explains"]) == {"z"}
    assert ((conservation["ratio"] - 1).abs() <= 0.05).mean() >= 0.95  # the input relevance is the score
    pd.testing.assert_series_equal(conservation["score"].iloc[2:].reset_index(drop=True), scores["score"])
    bounds = pd.read_csv(root / "explain/zbox_bounds.csv")
    assert list(bounds["band"]) == list(BANDS) and bounds["source"].str.contains("p0.1 and p99.9").all()
    summary = pd.read_csv(root / "tables/lrp_scores.csv")
    overall = summary[summary["class"] == "all"].iloc[0]
    assert overall["explanations"] == len(scores)
    assert overall["relevance_mass"] == pytest.approx(scores["relevance_mass"].mean())
    assert overall["relevance_mass_low"] <= overall["relevance_mass"] <= overall["relevance_mass_high"]


def test_every_loss_is_scored_on_the_same_stratified_patches(trained_demo, tmp_path):
    root, _ = trained_demo
    run = tmp_path / "run"
    for loss in ("cel", "fl"):  # the CEL model stands in for a second loss
        (run / "models" / loss / "seed0").mkdir(parents=True)
        shutil.copy(root / "models/cel/seed0/model.pt", run / "models" / loss / "seed0")
    models = [run / "models" / loss / "seed0" / "model.pt" for loss in ("fl", "cel")]
    scores = explain(models, root / "encoded", [{"class": "Mixed forest"}], run, per_class=2, threads=2)
    by_loss = [frame[["patch", "class"]].to_numpy().tolist() for _, frame in scores.groupby("loss", sort=False)]
    assert len(by_loss) == 2 and by_loss[0] == by_loss[1]
    maps = np.load(root / "encoded/test_reference_maps.npy")
    available = {name: int((maps == c).any(axis=(1, 2)).sum()) for c, name in enumerate(classes())}
    counts = scores[scores["loss"] == scores["loss"].iloc[0]]["class"].value_counts()
    assert {name: counts.get(name, 0) for name in classes()} == {n: min(2, a) for n, a in available.items()}
    cel, fl = (frame.reset_index(drop=True) for _, frame in scores.groupby("loss", sort=False))
    pd.testing.assert_series_equal(cel["relevance_mass"], fl["relevance_mass"])  # same model, same numbers


def test_without_reference_maps_the_score_table_has_its_header_only(trained_demo, tmp_path, caplog):
    root, _ = trained_demo
    encoded = tmp_path / "encoded"
    shutil.copytree(root / "encoded", encoded, ignore=shutil.ignore_patterns("*_reference_maps.npy"))
    with caplog.at_level(logging.WARNING):
        scores = explain(
            [root / "models/cel/seed0/model.pt"], encoded, [{"class": "Mixed forest"}], tmp_path, per_class=3
        )
    assert scores.empty and "test_reference_maps.npy absent" in caplog.text
    assert (tmp_path / "tables/lrp_scores.csv").read_text().strip() == ",".join(SUMMARY_COLUMNS)
    assert len(pd.read_csv(tmp_path / "explain/conservation.csv")) == 1  # Fig. 1's example alone
    assert (tmp_path / "figures/lrp_scores.png").read_bytes()[:4] == b"\x89PNG"
