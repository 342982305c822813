"""The explanation stage end to end: Fig. 1, conservation, ZBox bounds and scores against reference maps; one
architecture a call, explained or refused."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from benloss.errors import InputError
from benloss.explanation.conservation import CONSERVATION_COLUMNS
from benloss.explanation.explain import explain, relevance
from benloss.explanation.scores import SUMMARY_COLUMNS
from benloss.facts.bands import BANDS, read_band_statistics
from benloss.facts.nomenclature import classes
from benloss.training.batches import EncodedSplit
from benloss.training.config import TrainConfig

from .support import model_path, random_inputs, save_model, trained_like, trained_like_model


def test_box_rule_gives_band_specific_relevance(demo_encoded):
    statistics = read_band_statistics(demo_encoded / "band_statistics.csv")
    parts, _ = relevance(trained_like(), random_inputs(2), torch.tensor([2, 3]), statistics)
    for part in parts:  # a flat rule would give every band of a pixel the same value
        assert not torch.allclose(part[:, 0], part[:, 1])


def test_trained_cel_relevance_falls_inside_the_class_regions(trained_demo):
    root, _ = trained_demo
    examples = [{"class": "Mixed forest"}, {"class": "Coniferous forest"}]
    scores = explain([model_path(root)], root / "encoded", examples, root, per_class=4, threads=2)
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
    models = [model_path(run, loss) for loss in ("fl", "cel")]
    for path in models:  # the CEL model stands in for a second loss
        path.parent.mkdir(parents=True)
        shutil.copy(model_path(root), path)
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
        scores = explain([model_path(root)], encoded, [{"class": "Mixed forest"}], tmp_path, per_class=3)
    assert scores.empty and "test_reference_maps.npy absent" in caplog.text
    assert (tmp_path / "tables/lrp_scores.csv").read_text().strip() == ",".join(SUMMARY_COLUMNS)
    assert len(pd.read_csv(tmp_path / "explain/conservation.csv")) == 1  # Fig. 1's example alone
    assert (tmp_path / "figures/lrp_scores.png").read_bytes()[:4] == b"\x89PNG"


# -- other architectures ---------------------------------------------------------------------------------


def first_test_class(encoded) -> str:
    """A class the encoded test split's first patch carries."""
    return classes()[int(np.flatnonzero(EncodedSplit(encoded, "test").labels[0])[0])]


def test_a_resnet18_is_explained_with_its_relevance_conserved(demo_encoded, tmp_path):
    path = save_model(trained_like_model("resnet18"), model_path(tmp_path, "cel", "resnet18"),
                      TrainConfig(loss="cel", architecture="resnet18"))  # fmt: skip
    scores = explain([path], demo_encoded, [{"class": first_test_class(demo_encoded)}], tmp_path, threads=2)
    assert scores.empty  # the demo's encoded folder has no reference maps: Fig. 1's example alone
    conservation = pd.read_csv(tmp_path / "explain/conservation.csv")
    assert len(conservation) == 1 and not conservation["constant"].any()
    assert conservation["ratio"].sub(1).abs().max() <= 1e-4  # as on random inputs (test_lrp.RESIDUAL_TOLERANCE)
    stored = np.load(tmp_path / "explain/relevance.npz")  # back on each group's own grid
    assert stored["cel_10m"].shape == (1, 4, 120, 120) and stored["cel_20m"].shape == (1, 6, 60, 60)
    assert stored["cel_60m"].shape == (1, 2, 20, 20)
    assert (tmp_path / "figures/lrp_heatmaps.png").read_bytes()[:4] == b"\x89PNG"


def test_an_architecture_without_a_sound_composite_is_refused_with_the_reason(demo_encoded, tmp_path):
    path = model_path(tmp_path, "cel", "vit_small")
    path.parent.mkdir(parents=True)
    path.touch()  # refused by its folder, before it is read
    with pytest.raises(InputError, match=r"vit_small/cel/seed0/model\.pt: ViT-S/8 is not explained: a vision "
                                         r"transformer has no sound LRP composite"):  # fmt: skip
        explain([path], demo_encoded, [{"class": "Mixed forest"}], tmp_path)


def test_models_of_two_architectures_are_refused(demo_encoded, tmp_path):
    models = [model_path(tmp_path, "cel", "kbranch"), model_path(tmp_path, "fl", "resnet18")]
    with pytest.raises(InputError, match=r"models of 2 architectures .*kbranch.*resnet18.*: explain runs once per"):
        explain(models, demo_encoded, [{"class": "Mixed forest"}], tmp_path)


def test_a_model_in_another_architectures_folder_is_refused(demo_encoded, tmp_path):
    path = save_model(trained_like(), model_path(tmp_path, "cel", "resnet18"), TrainConfig(loss="cel", width=8))
    with pytest.raises(InputError, match=r"resnet18/cel/seed0/model\.pt: a kbranch model in a resnet18 folder"):
        explain([path], demo_encoded, [{"class": first_test_class(demo_encoded)}], tmp_path)
