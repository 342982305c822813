"""Patch names against the real ones we ship: every v2.0 and v1.0 name parses, and blocks partition as expected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benloss.errors import InputError
from benloss.evaluation.blocks import block_ids, block_sizes
from benloss.facts.patch_names import patch_position
from benloss.facts.resources import resource
from benloss.facts.splits import read_list


@pytest.fixture(scope="module")
def metadata() -> pd.DataFrame:
    return pd.read_parquet(resource("bigearthnet_v2/metadata.parquet"), columns=["patch_id", "split", "s2v1_name"])


def test_every_real_name_gives_its_tile_folder_and_a_grid_position(metadata):
    """v2.0's archive keeps each patch under its tile folder, the name without its two trailing numbers."""
    for names in (metadata["patch_id"], metadata["s2v1_name"], pd.Series(read_list(resource("splits/test.csv.bz2")))):
        positions = [patch_position(name) for name in names]
        folders = names.str.rsplit("_", n=2).str[0]
        assert [p.acquisition for p in positions] == list(folders)
        grid = np.array([(p.i, p.j) for p in positions])
        assert grid.min() == 0 and grid.max() <= 90  # 91 positions of 1.2 km across a 110 km tile


def test_blocks_group_one_acquisition_within_a_square(metadata):
    test = metadata[metadata["split"] == "test"]["patch_id"].tolist()
    parts = pd.Series(test).str.rsplit("_", n=2, expand=True)
    for block in (1, 7, 91):
        ids = block_ids(test, block)
        keys = (
            parts[0]
            + "/"
            + (parts[1].astype(int) // block).astype(str)
            + "/"
            + (parts[2].astype(int) // block).astype(str)
        )
        assert len(block_sizes(ids)) == keys.nunique()
        assert (pd.Series(ids).groupby(keys.to_numpy()).nunique() == 1).all()  # one id per key, one key per id
    assert len(block_sizes(block_ids(test, 91))) == parts[0].nunique() == 100  # v2.0's test split: 100 scenes
    assert (block_ids(test, 1) == np.arange(len(test))).all()


def test_a_name_that_is_not_a_patch_is_an_error():
    with pytest.raises(InputError, match="'S2A_MSIL2A_20170613T101031_26' is not a BigEarthNet-S2 name"):
        patch_position("S2A_MSIL2A_20170613T101031_26")
    with pytest.raises(InputError, match="block size must be at least 1"):
        block_ids(["S2A_MSIL2A_20170613T101031_26_57"], 0)
