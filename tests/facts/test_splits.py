"""The shipped official lists: checksums, counts, disjointness and the archive's total."""

from __future__ import annotations

import hashlib

import pytest

from benloss.facts.splits import read_list

from ..support import ROOT

SPLITS = ROOT / "resources" / "splits"
COUNTS = {
    "train.csv": 269_695,
    "val.csv": 123_723,
    "test.csv": 125_866,
    "patches_with_seasonal_snow.csv": 61_707,
    "patches_with_cloud_and_shadow.csv": 9_280,
}


@pytest.fixture(scope="module")
def lists() -> dict[str, list[str]]:
    return {name: read_list(SPLITS / f"{name}.bz2") for name in [*COUNTS, "patches_with_no_19_class_targets.csv"]}


def test_checksums_of_the_uncompressed_lists_match_md5sums():
    import bz2

    for line in (SPLITS / "MD5SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.md5(bz2.decompress((SPLITS / f"{name}.bz2").read_bytes())).hexdigest() == digest, name


def test_counts(lists):
    assert {name: len(set(lists[name])) for name in COUNTS} == COUNTS


def test_official_format_is_crlf_without_header():
    import bz2

    head = bz2.decompress((SPLITS / "val.csv.bz2").read_bytes())[:80]
    assert head.startswith(b"S2") and b"\r\n" in head and b"," not in head


def test_splits_are_disjoint_and_exclusions_outside_them(lists):
    train, val, test = (set(lists[f"{s}.csv"]) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    excluded = set(lists["patches_with_seasonal_snow.csv"]) | set(lists["patches_with_cloud_and_shadow.csv"])
    assert not excluded & (train | val | test)


def test_everything_adds_up_to_the_archive(lists):
    splits = set().union(*(lists[f"{s}.csv"] for s in ("train", "val", "test")))
    excluded = set(lists["patches_with_seasonal_snow.csv"]) | set(lists["patches_with_cloud_and_shadow.csv"])
    no_label = set(lists["patches_with_no_19_class_targets.csv"]) - excluded - splits
    assert len(no_label) == 55
    assert len(splits) + len(excluded) + len(no_label) == 590_326
