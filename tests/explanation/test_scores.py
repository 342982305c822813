"""Scores of explanations against reference maps, checked by hand, by scipy's bootstrap and by brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benloss.data.encoded import read_reference_maps
from benloss.explanation.scores import (
    ALL_CLASSES,
    SUMMARY_COLUMNS,
    mean_ci_or_nan,
    region_scores,
    stratified_sample,
    summarise,
)
from benloss.facts.nomenclature import classes


def test_region_scores_by_hand():
    heat = np.zeros((4, 4))
    heat[0, 0], heat[3, 3], heat[1, 1] = 3.0, 1.0, -5.0
    region = np.zeros((4, 4), bool)
    region[:2, :2] = True
    assert region_scores(heat, region) == {"relevance_mass": 0.75, "region_share": 0.25, "pointing_hit": True}


def test_pointing_game_misses_when_the_maximum_lies_outside():
    heat = np.full((3, 3), 0.5)
    heat[2, 2] = 2.0
    region = np.zeros((3, 3), bool)
    region[0] = True  # three of nine pixels: 1.5 of the 6.0 positive relevance
    scores = region_scores(heat, region)
    assert scores["pointing_hit"] is False
    assert scores["relevance_mass"] == pytest.approx(1.5 / 6.0)
    assert scores["region_share"] == pytest.approx(1 / 3)


def test_relevance_mass_is_undefined_without_positive_relevance():
    assert np.isnan(region_scores(-np.ones((2, 2)), np.eye(2, dtype=bool))["relevance_mass"])


def test_bootstrap_interval_matches_scipy_percentile_bootstrap():
    values = np.random.default_rng(5).beta(2, 5, size=60)
    mean, low, high = mean_ci_or_nan(values, n_boot=20000, seed=1)
    reference = stats.bootstrap((values,), np.mean, n_resamples=20000, method="percentile", random_state=2)
    assert mean == pytest.approx(values.mean())
    assert low == pytest.approx(reference.confidence_interval.low, abs=0.004)
    assert high == pytest.approx(reference.confidence_interval.high, abs=0.004)


def test_bootstrap_of_constant_values_is_a_point_and_of_nothing_nan():
    assert mean_ci_or_nan(np.full(7, 0.4), 100, 0) == pytest.approx((0.4, 0.4, 0.4))
    assert all(np.isnan(mean_ci_or_nan(np.array([]), 100, 0)))


def test_summary_means_per_class_and_overall_by_hand():
    first, second = classes()[0], classes()[5]
    examples = pd.DataFrame(
        [("CE", "a", first, 1.0, 0.8, 0.5, True), ("CE", "b", first, 1.0, 0.6, 0.5, False),
         ("CE", "c", second, 1.0, float("nan"), 0.2, False), ("CE", "d", second, 1.0, 0.2, 0.2, True)],
        columns=["loss", "patch", "class", "score", "relevance_mass", "region_share", "pointing_hit"],
    )  # fmt: skip
    table = summarise(examples, n_boot=200)
    assert list(table.columns) == list(SUMMARY_COLUMNS)
    summary = table.set_index("class")
    assert list(summary.index) == [first, second, ALL_CLASSES]  # official class order, then all
    assert summary.loc[first, "relevance_mass"] == pytest.approx(0.7)
    assert summary.loc[first, "mass_minus_share"] == pytest.approx(0.2)
    assert summary.loc[first, "pointing_game"] == 0.5
    assert summary.loc[second, "relevance_mass"] == pytest.approx(0.2)  # the NaN explanation has no mass
    assert summary.loc[second, "explanations"] == 2
    assert summary.loc[ALL_CLASSES, "relevance_mass"] == pytest.approx((0.8 + 0.6 + 0.2) / 3)
    assert summary.loc[ALL_CLASSES, "region_share"] == pytest.approx(0.35)
    assert summary.loc[ALL_CLASSES, "pointing_game"] == 0.5
    for column in ("relevance_mass", "mass_minus_share", "pointing_game"):
        assert (summary[f"{column}_low"] <= summary[column] + 1e-12).all()
        assert (summary[column] <= summary[f"{column}_high"] + 1e-12).all()


def test_summary_of_no_explanations_is_an_empty_table():
    empty = pd.DataFrame(columns=["loss", "patch", "class", "score", "relevance_mass", "region_share", "pointing_hit"])
    assert list(summarise(empty).columns) == list(SUMMARY_COLUMNS) and summarise(empty).empty


def _labels_and_maps(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random multi-hot labels; the maps hold each labelled class in one pixel, except for a third of them."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, len(classes()))) < 0.3).astype(np.uint8)
    maps = np.full((n, 120, 120), 255, dtype=np.uint8)
    for row, c in zip(*np.nonzero(labels), strict=True):
        if rng.random() < 2 / 3:
            maps[row, c // 120, c] = c
    return labels, maps


def test_stratified_sample_takes_per_class_patches_carrying_the_class_in_labels_and_map():
    labels, maps = _labels_and_maps()
    pairs = stratified_sample(labels, maps, per_class=4, seed=3)
    for c in range(len(classes())):
        rows = [row for row, k in pairs if k == c]
        eligible = [row for row in range(len(labels)) if labels[row, c] and (maps[row] == c).any()]  # brute force
        assert len(rows) == min(4, len(eligible)) and set(rows) <= set(eligible)
        assert len(set(rows)) == len(rows)


def test_stratified_sample_takes_all_where_a_class_has_fewer():
    labels, maps = _labels_and_maps(n=12)
    pairs = stratified_sample(labels, maps, per_class=50)
    expected = {(row, c) for row, c in zip(*np.nonzero(labels), strict=True) if (maps[row] == c).any()}
    assert set(pairs) == expected


def test_stratified_sample_depends_on_the_seed_only():
    labels, maps = _labels_and_maps()
    assert stratified_sample(labels, maps, 4, seed=1) == stratified_sample(labels, maps, 4, seed=1)
    assert stratified_sample(labels, maps, 4, seed=1) != stratified_sample(labels, maps, 4, seed=2)


def test_a_class_sample_does_not_depend_on_the_other_classes():
    labels, maps = _labels_and_maps()
    changed = labels.copy()
    changed[:, 1:] = 0
    first = [pair for pair in stratified_sample(labels, maps, 4) if pair[1] == 0]
    assert first == stratified_sample(changed, maps, 4)


def test_reference_maps_are_absent_or_checked(tmp_path):
    assert read_reference_maps(tmp_path, "test", 3) is None
    np.save(tmp_path / "test_reference_maps.npy", np.zeros((3, 60, 60), np.uint8))
    with pytest.raises(ValueError, match=r"test_reference_maps\.npy.*shape"):
        read_reference_maps(tmp_path, "test", 3)
    np.save(tmp_path / "test_reference_maps.npy", np.zeros((3, 120, 120), np.uint8))
    assert read_reference_maps(tmp_path, "test", 3).shape == (3, 120, 120)
