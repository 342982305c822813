"""The stratified subset (``data.subset``): its sizes, its reproducibility, and the class shares it keeps on the
official v2.0 metadata (all 549,488 patches)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from benloss.data.sources.base import finish_table
from benloss.data.subset import Subset, label_matrix, stratified_choice
from benloss.errors import InputError
from benloss.facts.nomenclature import classes

from ..support import V2_SHIPPED

SPLIT_NAMES = {"train": "train", "validation": "val", "test": "test"}
#: Every class of every split stays within this many patches of its share r · n_c of the split (a random draw of
#: 10 % of the training split misses by up to about a hundred).
TOLERANCE = 2


@pytest.fixture(scope="module")
def v2_table() -> pd.DataFrame:
    """Every patch of the two shipped parquet files (kept and excluded alike) with its official split and labels."""
    files = ("metadata.parquet", "metadata_for_patches_with_snow_cloud_or_shadow.parquet")
    rows = pd.concat([pd.read_parquet(V2_SHIPPED / name, columns=["patch_id", "split", "labels"]) for name in files])
    triples = zip(rows["patch_id"], rows["split"], rows["labels"], strict=True)
    return finish_table([(name, SPLIT_NAMES[split], list(labels), list(labels)) for name, split, labels in triples])


def counts(table: pd.DataFrame, split: str) -> Counter:
    """Patches per class of one split, counted from the label lists."""
    return Counter(name for labels in table.loc[table["split"] == split, "labels"] for name in labels)


def test_the_table_is_the_whole_official_metadata(v2_table):
    assert len(v2_table) == 549_488 and v2_table["patch"].is_unique


def test_every_class_keeps_its_share_of_its_split(v2_table):
    subset = Subset({"train": 0.1, "val": 5000, "test": 0.01}, seed=0)
    drawn = subset.draw(v2_table)
    assert drawn["patch"].is_unique and set(drawn["patch"]) <= set(v2_table["patch"])
    sizes = v2_table["split"].value_counts()
    expected = {"train": round(0.1 * sizes["train"]), "val": 5000, "test": round(0.01 * sizes["test"])}
    assert drawn["split"].value_counts().to_dict() == expected
    for split, k in expected.items():
        full, got, r = counts(v2_table, split), counts(drawn, split), k / sizes[split]
        misses = {name: got[name] - r * full[name] for name in classes()}
        assert max(map(abs, misses.values())) <= TOLERANCE, (split, misses)
    # the tolerance means something: a random draw of 10 % of the training split misses it
    rows = np.flatnonzero(v2_table["split"] == "train")
    random = v2_table.iloc[np.random.default_rng(0).choice(rows, expected["train"], replace=False)]
    full, got, r = counts(v2_table, "train"), counts(random, "train"), expected["train"] / sizes["train"]
    assert max(abs(got[name] - r * full[name]) for name in classes()) > 10 * TOLERANCE


def test_the_same_seed_draws_the_same_subset_and_another_seed_another(v2_table):
    sizes = {"train": 0.01, "val": 2000, "test": 0.02}
    first, again, other = (Subset(sizes, seed).draw(v2_table) for seed in (3, 3, 4))
    assert first.equals(again)
    for split in sizes:
        names = {seed: set(table.loc[table["split"] == split, "patch"]) for seed, table in ((3, first), (4, other))}
        assert len(names[3]) == len(names[4]) and names[3] != names[4], split


def test_a_splits_subset_does_not_depend_on_the_other_splits_sizes(v2_table):
    alone = Subset({"val": 1000}, seed=1).draw(v2_table)
    together = Subset({"train": 0.05, "val": 1000, "test": 300}, seed=1).draw(v2_table)
    assert alone[alone["split"] == "val"]["patch"].tolist() == together[together["split"] == "val"]["patch"].tolist()
    assert (alone["split"] == "train").sum() == (v2_table["split"] == "train").sum()  # train kept whole


def test_the_summary_gives_each_classs_patches_and_share_before_and_after(v2_table):
    subset = Subset({"train": 0.02, "val": 0.02, "test": 0.02}, seed=0)
    drawn = subset.draw(v2_table)
    described = subset.describe(v2_table, drawn)
    assert described["seed"] == 0
    for split in ("train", "val", "test"):
        part = described["splits"][split]
        full, got = counts(v2_table, split), counts(drawn, split)
        n, k = (v2_table["split"] == split).sum(), (drawn["split"] == split).sum()
        assert (part["requested"], part["of"], part["drawn"]) == (0.02, n, k)
        for name in classes():
            assert part["classes"][name] == {"of": full[name], "drawn": got[name], "share_of": full[name] / n,
                                             "share_drawn": got[name] / k}  # fmt: skip


def test_a_hand_checked_draw():
    """r = 1/2 of 2 rows of class A only, 8 of class B only and 4 of no class: 1 A, 4 B and 2 of no class."""
    labels = np.array([[1, 0]] * 2 + [[0, 1]] * 8 + [[0, 0]] * 4, bool)
    for seed in range(5):
        rows = stratified_choice(labels, 7, np.random.default_rng(seed))
        assert list(rows) == sorted(set(rows.tolist())) and len(rows) == 7
        assert (labels[rows, 0].sum(), labels[rows, 1].sum(), (~labels[rows].any(1)).sum()) == (1, 4, 2)
    assert stratified_choice(labels, 14, np.random.default_rng(0)).tolist() == list(range(14))
    assert stratified_choice(labels, 0, np.random.default_rng(0)).tolist() == []


@pytest.mark.parametrize(
    ("size", "available", "expected"),
    [(0.1, 237_871, 23_787), (0.5, 5, 3), (0.001, 10, 1), (1.0, 7, 7), (1, 7, 7), (5000, 122_342, 5000),
     (5000, 18, 18), (0.3, 0, 0)],
)  # fmt: skip
def test_sizes_are_fractions_up_to_one_and_patch_counts_above(size, available, expected):
    assert Subset({"train": size}).target("train", available) == expected


def test_a_whole_split_everywhere_draws_nothing(v2_table):
    assert not Subset().draws and not Subset({"train": 1, "val": 1.0}).draws and Subset({"test": 0.5}).draws
    assert Subset({"train": 1}).draw(v2_table) is v2_table


@pytest.mark.parametrize(
    ("sizes", "message"),
    [({"train": 0}, r"data\.subset\.train: 0 is neither"), ({"val": -0.5}, r"data\.subset\.val: -0\.5 is neither"),
     ({"test": 2.5}, r"data\.subset\.test: 2\.5 patches; above 1 the size is a number of patches, whole"),
     ({"train": True}, "neither"), ({"holdout": 0.5}, r"unknown split\(s\) \['holdout'\]")],
)  # fmt: skip
def test_a_bad_size_is_an_error_naming_the_key(sizes, message):
    with pytest.raises(InputError, match=message):
        Subset(sizes)


def test_label_matrix_follows_the_official_class_order():
    matrix = label_matrix(pd.Series([["Marine waters", "Urban fabric"], []]))
    assert matrix.tolist() == [[i in (0, 18) for i in range(19)], [False] * 19]
