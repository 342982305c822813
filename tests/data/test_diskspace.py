"""The data stages check free disk space before writing, and their size estimates match what they write."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from benloss.data import diskspace
from benloss.data.diskspace import DiskSpaceError, require_free_space
from benloss.data.encode import encode_archive, encoded_bytes
from benloss.data.labels import TABLE_BYTES_PER_PATCH, run_labels
from benloss.facts.splits import read_list

from ..support import demo_lists
from .support import Usage


@pytest.fixture
def almost_full(monkeypatch):
    """Every disk has 1 MB free."""
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda path: Usage(10**12, 10**12 - 10**6, 10**6))


def test_encoded_bytes_is_what_the_encoder_writes(demo_encoded):
    arrays = [np.load(path, mmap_mode="r") for path in demo_encoded.glob("*.npy")]
    patches = sum(
        len((demo_encoded / f"{split}_patches.txt").read_text().split()) for split in ("train", "val", "test")
    )
    assert sum(array.nbytes for array in arrays) == encoded_bytes(patches)
    assert encoded_bytes(1) == 2 * (4 * 120**2 + 6 * 60**2 + 2 * 20**2) + 19


def test_bigearthnet_19_encodes_into_about_83_gb():
    assert encoded_bytes(269_695 + 123_723 + 125_866) == pytest.approx(83e9, rel=0.01)


def test_encoder_refuses_a_disk_too_small_and_writes_nothing(demo, demo_labels, tmp_path, almost_full):
    with pytest.raises(
        DiskSpaceError, match=r"encoded: the encoded arrays take about \d\.\d MB, .* has only 1\.0 MB free"
    ):
        encode_archive(demo / "BigEarthNet-demo.tar.gz", demo_labels / "patches.parquet",
                       demo / "band_statistics.csv", tmp_path / "encoded")  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_label_stage_refuses_a_disk_too_small_and_writes_nothing(demo, tmp_path, monkeypatch):
    listed = sum(len(read_list(path)) for key, path in demo_lists(demo).items() if key in ("train", "val", "test"))
    free = TABLE_BYTES_PER_PATCH * listed - 1
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda path: Usage(10**12, 10**12 - free, free))
    with pytest.raises(DiskSpaceError, match="the label table and its summaries take about"):
        run_labels(demo / "BigEarthNet-demo.tar.gz", demo_lists(demo), tmp_path / "labels")
    assert not (tmp_path / "labels").exists() or list((tmp_path / "labels").iterdir()) == []


def test_a_folder_not_yet_made_is_checked_on_its_disk(tmp_path):
    require_free_space(tmp_path / "not" / "yet", 1, "one byte")
    with pytest.raises(DiskSpaceError, match=str(tmp_path)):
        require_free_space(tmp_path / "not" / "yet", shutil.disk_usage(tmp_path).free + 10**12, "a lot")
