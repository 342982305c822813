"""Partial archives (``data.allow_missing``) and subsets (``data.subset``) through the one-pass data stage: a partial
v2.0 copy against the official metadata, today's error without ``allow_missing``, and subsets that equal the
study of their drawn lists, however they are drawn."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import zstandard

from benloss.cli import main
from benloss.data import encode as encode_module
from benloss.data.encoded import open_encoded, read_patch_names, read_reference_maps
from benloss.data.labels import read_label_table
from benloss.data.prepare import prepare
from benloss.data.selection import Selection
from benloss.data.sources import open_source
from benloss.data.sources.bigearthnet_v2 import EXCLUSIONS, METADATA
from benloss.data.subset import Subset
from benloss.data.synth import SynthConfig, make_demo_archive
from benloss.errors import InputError
from benloss.explanation.scores import stratified_sample
from benloss.facts.bands import BAND_GROUPS
from benloss.facts.nomenclature import classes
from benloss.facts.splits import read_list, write_list

from ..support import V2_REAL, V2_SHIPPED, V2_TEST_PATCH, V2_TILE, V2_VAL_PATCH, demo_lists, partial_v2_archive

#: The official v2.0 split sizes (Zenodo record 10891137; BIGEARTHNET_V2.md), written out as the reference.
OFFICIAL_SIZES = {"train": 237_871, "val": 122_342, "test": 119_825}
PARTIAL = {"train": 16, "val": 4, "test": 4}
ABSENT = "S2A_MSIL2A_20170613T101031_99_99"


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def zstd_tar(folder: Path, target: Path) -> Path:
    """``folder`` as a zstd-compressed tar, its top folder kept (as ``BigEarthNet-S2.tar.zst``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=folder.name)
    target.write_bytes(zstandard.ZstdCompressor().compress(buffer.getvalue()))
    return target


def v2_source(archive: Path, maps: Path, dataset: str = "bigearthnet-v2", folder: Path = V2_SHIPPED):
    return open_source(dataset, "v2", archive, reference_maps=maps, metadata=folder / METADATA,
                       exclusions=folder / EXCLUSIONS)  # fmt: skip


@pytest.fixture(scope="module")
def partial(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A partial v2.0 copy of 24 patches (16 train, 4 val, 4 test) as ``BigEarthNet-S2.tar.zst`` and a reference
    map folder holding one map, and each patch's real source."""
    folder = tmp_path_factory.mktemp("partial")
    chosen = partial_v2_archive(folder, PARTIAL)
    zstd_tar(folder / "BigEarthNet-S2", folder / "BigEarthNet-S2.tar.zst")
    return folder, chosen


@pytest.fixture(scope="module")
def prepared_partial(partial, tmp_path_factory) -> Path:
    """The partial copy prepared through the command line, with ``--allow-missing``."""
    folder, _ = partial
    out = tmp_path_factory.mktemp("prepared")
    main(["prepare", "--dataset", "bigearthnet-v2", "--archive", str(folder / "BigEarthNet-S2.tar.zst"),
          "--reference-maps", str(folder / "Reference_Maps"), "--metadata", str(V2_SHIPPED / METADATA),
          "--exclusions", str(V2_SHIPPED / EXCLUSIONS), "--allow-missing", "--labels-out", str(out / "labels"),
          "--out", str(out / "encoded")])  # fmt: skip
    return out


def test_a_partial_copy_with_allow_missing_encodes_the_patches_it_holds(partial, prepared_partial):
    _, chosen = partial
    official = pd.read_parquet(V2_SHIPPED / METADATA).set_index("patch_id")
    encoded = prepared_partial / "encoded"
    split_of = {"train": "train", "validation": "val", "test": "test"}
    for split in ("train", "val", "test"):
        names = read_patch_names(encoded, split)
        assert names == sorted(n for n in chosen if split_of[official.loc[n, "split"]] == split)
        assert len(names) == PARTIAL[split]
        arrays = open_encoded(encoded, split)
        for row, name in enumerate(names):
            expected = [classes().index(label) for label in official.loc[name, "labels"]]
            assert np.flatnonzero(arrays["labels"][row]).tolist() == sorted(expected), name
        row = 0  # the first patch's bands are its real source's, as rasterio reads them
        for group in BAND_GROUPS:
            for channel, band in enumerate(group.bands):
                path = V2_REAL / "BigEarthNet-S2" / V2_TILE / chosen[names[row]] / f"{chosen[names[row]]}_{band}.tif"
                with rasterio.open(path) as dataset:
                    assert np.array_equal(arrays[group.name][row, channel], dataset.read(1)), (split, band)
    table = read_label_table(prepared_partial / "labels" / "patches.parquet")
    assert sorted(table["patch"]) == sorted(chosen)


def test_the_summary_counts_what_the_copy_lacks(prepared_partial):
    summary = json.loads((prepared_partial / "labels" / "summary.json").read_text())
    assert summary["kept"] == PARTIAL and summary["patches_in_archive"] == 24
    assert summary["listed_but_absent"] == {split: OFFICIAL_SIZES[split] - PARTIAL[split] for split in PARTIAL}
    assert summary["reference_maps_absent"] == {"train": 16, "val": 4, "test": 3}  # the real test patch has its map
    assert summary["dropped"]["snow"] == 60_773 and "subset" not in summary
    official = pd.read_parquet(V2_SHIPPED / METADATA).set_index("patch_id")
    counts = pd.read_csv(prepared_partial / "labels" / "class_counts.csv", index_col="class")
    for split in PARTIAL:
        names = read_patch_names(prepared_partial / "encoded", split)
        tally = Counter(label for name in names for label in official.loc[name, "labels"])
        assert counts[split].to_dict() == {name: tally[name] for name in classes()}


def test_a_patch_without_its_map_reads_no_class_and_is_never_scored(prepared_partial):
    encoded = prepared_partial / "encoded"
    names = read_patch_names(encoded, "test")
    maps = read_reference_maps(encoded, "test", len(names))
    real = names.index(V2_TEST_PATCH)
    path = V2_REAL / "Reference_Maps" / V2_TILE / V2_TEST_PATCH / f"{V2_TEST_PATCH}_reference_map.tif"
    with rasterio.open(path) as dataset:
        codes = dataset.read(1)
    for code, name in ((211, "Arable land"), (231, "Pastures"), (311, "Broad-leaved forest"), (313, "Mixed forest")):
        assert np.array_equal(maps[real] == classes().index(name), codes == code)
    others = [row for row in range(len(names)) if row != real]
    assert (np.asarray(maps[others]) == 255).all()
    for split in ("train", "val"):
        assert (np.asarray(read_reference_maps(encoded, split)) == 255).all()
    labels = open_encoded(encoded, "test")["labels"]
    pairs = stratified_sample(np.asarray(labels), maps, per_class=5, seed=0)
    assert pairs and {row for row, _ in pairs} == {real}  # the explanations are scored on the mapped patch only


def test_without_allow_missing_a_partial_copy_is_todays_error_and_writes_nothing(partial, tmp_path):
    folder, _ = partial
    source = v2_source(folder / "BigEarthNet-S2.tar.zst", folder / "Reference_Maps")
    expected = (r"BigEarthNet-S2\.tar\.zst: 480,014 labelled patch\(es\) not found in the archive "
                r"\(train 237,855, val 122,338, test 119,821\), e\.g\. S2.*data\.allow_missing: true")  # fmt: skip
    with pytest.raises(InputError, match=expected):
        prepare(source, tmp_path / "labels", tmp_path / "encoded")
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []


def test_an_absent_map_without_allow_missing_is_an_error(tmp_path):
    """All 24 patches' bands are there, but 23 maps are not: without ``allow_missing`` that stops the step too."""
    metadata = pd.read_parquet(V2_SHIPPED / METADATA)
    chosen = partial_v2_archive(tmp_path / "copy", PARTIAL)
    metadata[metadata["patch_id"].isin(chosen)].to_parquet(tmp_path / METADATA, index=False)
    pd.read_parquet(V2_SHIPPED / EXCLUSIONS).head(0).to_parquet(tmp_path / EXCLUSIONS, index=False)
    source = v2_source(tmp_path / "copy" / "BigEarthNet-S2", tmp_path / "copy" / "Reference_Maps", "demo", tmp_path)
    with pytest.raises(InputError, match=r"Reference_Maps: 23 labelled patch\(es\) not found.*maps read \"no class\""):
        prepare(source, tmp_path / "out" / "labels", tmp_path / "out" / "encoded")
    assert not (tmp_path / "out").exists() or not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_a_split_left_empty_stops_naming_it(tmp_path):
    """The two real patches alone (one val, one test): no training patch is left."""
    chosen = partial_v2_archive(tmp_path, {"train": 0, "val": 1, "test": 1})
    assert set(chosen) == {V2_VAL_PATCH, V2_TEST_PATCH}
    source = v2_source(tmp_path / "BigEarthNet-S2", tmp_path / "Reference_Maps")
    with pytest.raises(InputError, match=r"BigEarthNet-S2: none of the 237,871 train patches that the lists or the "
                       r"metadata name is in the archive"):  # fmt: skip
        prepare(source, tmp_path / "out" / "labels", tmp_path / "out" / "encoded", Selection(allow_missing=True))
    assert not (tmp_path / "out").exists() or not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_a_v1_listed_patch_the_archive_lacks_is_an_error_unless_allowed(demo, tmp_path):
    lists = demo_lists(demo)
    write_list(tmp_path / "test.csv", [*read_list(lists["test"]), ABSENT])
    source = open_source("demo", "v1", demo / "BigEarthNet-demo.tar.gz", lists=lists | {"test": tmp_path / "test.csv"},
                         band_statistics=demo / "band_statistics.csv")  # fmt: skip
    expected = rf"1 labelled patch\(es\) not found in the archive \(train 0, val 0, test 1\), e\.g\. {ABSENT}"
    with pytest.raises(InputError, match=expected):
        prepare(source, tmp_path / "strict" / "labels", tmp_path / "strict" / "encoded")
    assert not (tmp_path / "strict").exists() or not any(p.is_file() for p in (tmp_path / "strict").rglob("*"))
    summary = prepare(source, tmp_path / "ok" / "labels", tmp_path / "ok" / "encoded", Selection(allow_missing=True))
    assert summary["listed_but_absent"] == {"train": 0, "val": 0, "test": 1}
    assert read_patch_names(tmp_path / "ok" / "encoded", "test") == sorted(read_list(lists["test"]))


# -- subsets through the data stage --------------------------------------------------------------------------------


def demo_v1_source(folder: Path, lists: dict[str, Path]):
    return open_source("demo", "v1", folder / "BigEarthNet-demo.tar.gz", lists=lists,
                       band_statistics=folder / "band_statistics.csv",
                       reference_maps=folder / "Reference_Maps.tar.zst")  # fmt: skip


def test_a_v1_subset_equals_the_study_of_its_drawn_lists(demo, tmp_path):
    """v1.0's labels come with the stream, so its subset is drawn after the pass and the undrawn rows compacted
    away; the result equals preparing the archive with the drawn lists as the split lists, training statistics
    included (read back from the kept rows rather than accumulated while streaming)."""
    subset = Subset({"train": 0.5, "val": 3, "test": 1.0}, seed=2)
    summary = prepare(demo_v1_source(demo, demo_lists(demo)), tmp_path / "sub" / "labels", tmp_path / "sub" / "encoded",
                      Selection(subset))  # fmt: skip
    labels = tmp_path / "sub" / "labels"
    drawn = {split: read_list(labels / f"subset_{split}.csv") for split in ("train", "val", "test")}
    for split, names in drawn.items():
        assert names == read_patch_names(tmp_path / "sub" / "encoded", split)
    full = len(read_list(demo_lists(demo)["train"]))
    assert (len(drawn["train"]), len(drawn["val"])) == ((full + 1) // 2, 3)
    assert drawn["test"] == sorted(read_list(demo_lists(demo)["test"]))
    lists = demo_lists(demo) | {split: labels / f"subset_{split}.csv" for split in drawn}
    prepare(demo_v1_source(demo, lists), tmp_path / "ref" / "labels", tmp_path / "ref" / "encoded")
    ours, reference = files_of(tmp_path / "sub"), files_of(tmp_path / "ref")
    for name in ("labels/summary.json", *(f"labels/subset_{split}.csv" for split in drawn)):
        ours.pop(name)
    reference.pop("labels/summary.json")
    assert ours.keys() == reference.keys() and [name for name in ours if ours[name] != reference[name]] == []
    part = summary["subset"]["splits"]["train"]
    assert (part["of"], part["drawn"], part["requested"]) == (full, len(drawn["train"]), 0.5)


@pytest.fixture(scope="module")
def demo_v2(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo_v2")
    make_demo_archive(folder, SynthConfig(patches=60, seed=5, format="v2"))
    return folder


def test_a_v2_subset_is_drawn_before_the_pass_and_only_its_patches_are_decoded(demo_v2, tmp_path, monkeypatch):
    """Labels known up front: only the drawn patches' bands are decoded. Drawn after the pass instead (as with
    ``allow_missing``), the subset and every output are the same."""
    decoded = set()
    decode = encode_module.decode_band

    def counting(data, patch, band):
        decoded.add(patch)
        return decode(data, patch, band)

    subset = Subset({"train": 0.4, "val": 0.5, "test": 4}, seed=7)
    source = open_source("demo", "v2", demo_v2 / "BigEarthNet-S2.tar.zst", metadata=demo_v2 / METADATA,
                         exclusions=demo_v2 / EXCLUSIONS,
                         reference_maps=demo_v2 / "Reference_Maps.tar.zst")  # fmt: skip
    monkeypatch.setattr(encode_module, "decode_band", counting)
    before = prepare(source, tmp_path / "before" / "labels", tmp_path / "before" / "encoded", Selection(subset))
    kept = {name for split in ("train", "val", "test") for name in read_patch_names(tmp_path / "before" / "encoded",
                                                                                      split)}  # fmt: skip
    assert decoded == kept and len(kept) == sum(before["kept"].values()) and before["kept"]["test"] == 4
    after = prepare(source, tmp_path / "after" / "labels", tmp_path / "after" / "encoded",
                    Selection(subset, allow_missing=True))  # fmt: skip
    ours, reference = files_of(tmp_path / "after"), files_of(tmp_path / "before")
    assert json.loads(ours.pop("labels/summary.json")) == json.loads(reference.pop("labels/summary.json")) | {
        "listed_but_absent": {"train": 0, "val": 0, "test": 0},
        "reference_maps_absent": {"train": 0, "val": 0, "test": 0},
        "patches_in_archive": after["patches_in_archive"],
    }
    assert ours == reference
    table = read_label_table(tmp_path / "before" / "labels" / "patches.parquet")
    counts = pd.read_csv(tmp_path / "before" / "labels" / "class_counts.csv", index_col="class")
    for split in ("train", "val", "test"):
        tally = Counter(name for labels in table.loc[table["split"] == split, "labels"] for name in labels)
        assert counts[split].to_dict() == {name: tally[name] for name in classes()}
        described = before["subset"]["splits"][split]["classes"]
        assert {name: described[name]["drawn"] for name in classes()} == counts[split].to_dict()


def test_without_a_subset_no_list_is_written(demo_v2, tmp_path):
    source = open_source("demo", "v2", demo_v2 / "BigEarthNet-S2.tar.zst", metadata=demo_v2 / METADATA,
                         exclusions=demo_v2 / EXCLUSIONS)  # fmt: skip
    prepare(source, tmp_path / "labels", tmp_path / "encoded", Selection(Subset({"train": 1, "val": 1.0})))
    assert sorted(path.name for path in (tmp_path / "labels").iterdir()) == [
        "class_counts.csv", "patches.parquet", "summary.json"]  # fmt: skip
