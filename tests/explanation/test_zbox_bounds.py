"""ZBox's input bounds: the training split's percentiles, normalised like the inputs, and the pixels outside them."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from zennit.rules import ZBox

from benloss.explanation.explain import input_bounds
from benloss.explanation.lrp import lrp_composite
from benloss.explanation.zbox_bounds import bounds_table, zbox_bounds
from benloss.facts.bands import BAND_GROUPS, BANDS, read_band_statistics
from benloss.training.batches import EncodedSplit
from benloss.training.models import INPUT_CONVS

from .support import trained_like, write_training_statistics


def rule_map(statistics, bounds=None) -> dict:
    """The K-Branch CNN's composite as {layer name: rule}, with ZBox bounds from ``bounds``."""
    model = trained_like()
    rules = lrp_composite(model, input_bounds("kbranch", statistics, bounds)).module_map
    return {name: rule for name, module in model.named_modules() if (rule := rules({}, name, module)) is not None}


def box_bounds(rule: ZBox, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised (low, high) a ZBox rule applies, read back through its input modifiers."""
    x = torch.zeros(1, channels, 4, 4)
    return rule.input_modifiers[1](x)[0, :, 0, 0], rule.input_modifiers[2](x)[0, :, 0, 0]


def test_every_branch_input_gets_the_box_rule(demo_encoded):
    statistics = read_band_statistics(demo_encoded / "band_statistics.csv")
    mapped = rule_map(statistics)
    assert [name for name, rule in mapped.items() if isinstance(rule, ZBox)] == list(INPUT_CONVS)


def test_zbox_bounds_are_the_training_splits_percentiles_normalised(demo_encoded, tmp_path):
    statistics = read_band_statistics(demo_encoded / "band_statistics.csv")
    low = {band: 10.0 * i for i, band in enumerate(BANDS)}
    high = {band: 12000.0 + 100 * i for i, band in enumerate(BANDS)}
    write_training_statistics(tmp_path, low, high)  # min and max far off: not read
    bounds = zbox_bounds(tmp_path)
    assert "p0.1 and p99.9" in bounds.source
    mapped = rule_map(statistics, bounds)
    for group, name in zip(BAND_GROUPS, INPUT_CONVS, strict=True):
        got_low, got_high = box_bounds(mapped[name], len(group.bands))
        mean = torch.tensor([statistics.mean[b] for b in group.bands])
        std = torch.tensor([statistics.std[b] for b in group.bands])
        torch.testing.assert_close(got_low, (torch.tensor([low[b] for b in group.bands]) - mean) / std)
        torch.testing.assert_close(got_high, (torch.tensor([high[b] for b in group.bands]) - mean) / std)


def test_the_encoded_demo_gives_bounds_inside_its_training_range(demo_encoded):
    bounds = zbox_bounds(demo_encoded)
    assert "p0.1 and p99.9" in bounds.source
    assert all(bounds.low[band] < bounds.high[band] for band in BANDS)


def test_a_file_from_before_the_percentiles_gives_min_and_max_with_a_warning(tmp_path, caplog):
    low, high = dict.fromkeys(BANDS, 3.0), dict.fromkeys(BANDS, 15000.0)
    write_training_statistics(tmp_path, low, high, columns=("min", "max"))
    with caplog.at_level(logging.WARNING):
        bounds = zbox_bounds(tmp_path)
    assert "no p0.1 and p99.9 columns" in caplog.text and "min and max" in bounds.source
    assert (bounds.low, bounds.high) == (low, high)


def test_zbox_bounds_fall_back_to_raw_0_and_10000_with_a_warning(demo_encoded, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        bounds = zbox_bounds(tmp_path)
    assert "training_band_statistics.csv absent" in caplog.text
    assert set(bounds.low.values()) == {0.0} and set(bounds.high.values()) == {10000.0}
    statistics = read_band_statistics(demo_encoded / "band_statistics.csv")
    got_low, got_high = box_bounds(rule_map(statistics)[INPUT_CONVS[2]], 2)
    mean, std = (torch.from_numpy(a) for a in statistics.group_arrays(BAND_GROUPS[2]))
    torch.testing.assert_close(got_low, -mean / std)
    torch.testing.assert_close(got_high, (10000.0 - mean) / std)


def test_bad_training_statistics_name_the_file(tmp_path):
    write_training_statistics(tmp_path, dict.fromkeys(BANDS, 5.0), dict.fromkeys(BANDS, 1.0))
    with pytest.raises(ValueError, match=r"training_band_statistics\.csv: .* its p0\.1 exceeds its p99\.9"):
        zbox_bounds(tmp_path)
    (tmp_path / "training_band_statistics.csv").write_text("band,mean,std,min,max,p0.1,p99.9\nB02,1,1,0,9,1,8\n")
    with pytest.raises(ValueError, match=r"training_band_statistics\.csv: no bounds for B01"):
        zbox_bounds(tmp_path)


def test_out_of_range_pixels_are_counted_against_both_bounds(demo_encoded, tmp_path):
    split = EncodedSplit(demo_encoded, "test")
    rows = np.array([0, 2, 3])
    write_training_statistics(tmp_path, dict.fromkeys(BANDS, 900.0), dict.fromkeys(BANDS, 1500.0))
    table = bounds_table(split, rows, zbox_bounds(tmp_path)).set_index("band")
    for group in BAND_GROUPS:
        values = np.asarray(split.arrays[group.name][rows])
        for channel, band in enumerate(group.bands):
            pixels = values[:, channel]  # brute force over the same patches
            assert table.loc[band, "pixels"] == pixels.size
            assert table.loc[band, "above_10000"] == (pixels > 10000).sum()
            assert table.loc[band, "outside_bounds"] == ((pixels < 900) | (pixels > 1500)).sum()
    assert table["outside_bounds"].sum() > 0
