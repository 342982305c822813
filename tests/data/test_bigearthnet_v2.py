"""BigEarthNet v2.0: the official metadata, the real patches and reference maps, the demo in v2.0 layout."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
import zstandard

from benloss.data.archive import ArchiveError
from benloss.data.encode import encode
from benloss.data.encoded import open_encoded, read_patch_names, read_reference_maps
from benloss.data.labels import read_label_table, write_labels
from benloss.data.sources import open_source
from benloss.data.sources.bigearthnet_v2 import EXCLUSIONS, METADATA
from benloss.data.synth import SynthConfig, class_region, make_demo_archive, read_masks
from benloss.facts.bands import BAND_GROUPS, BANDS, read_band_statistics
from benloss.facts.nomenclature import (
    NO_CLASS,
    UnknownCorineCodeError,
    classes,
    corine_to_class_index,
    reference_map_labels,
)
from benloss.facts.splits import list_paths

from ..support import FIXTURES, ROOT

SHIPPED = ROOT / "resources" / "bigearthnet_v2"
REAL = FIXTURES / "bigearthnet-v2"
TILE = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
TEST_PATCH = f"{TILE}_26_57"  # a test patch with its bands and its reference map
VAL_PATCH = f"{TILE}_75_43"  # a validation patch, bands only
# From Zenodo record 10891137 (BIGEARTHNET_V2.md), written out here as the independent reference.
OFFICIAL_MD5 = {METADATA: "55687065e77b6d0b0f1ff604a6e7b49c", EXCLUSIONS: "fe31856f4986d446c9468b59d6387c91"}
# The CORINE code -> class table of the pipeline that built v2.0 (BIGEARTHNET_V2.md), by hand.
V2_TABLE = {
    (111, 112): "Urban fabric", (121,): "Industrial or commercial units", (211, 212, 213): "Arable land",
    (221, 222, 223, 241): "Permanent crops", (231,): "Pastures", (242,): "Complex cultivation patterns",
    (243,): "Land principally occupied by agriculture, with significant areas of natural vegetation",
    (244,): "Agro-forestry areas", (311,): "Broad-leaved forest", (312,): "Coniferous forest", (313,): "Mixed forest",
    (321, 333): "Natural grassland and sparsely vegetated areas",
    (322, 323): "Moors, heathland and sclerophyllous vegetation", (324,): "Transitional woodland, shrub",
    (331,): "Beaches, dunes, sands", (411, 412): "Inland wetlands", (421, 422): "Coastal wetlands",
    (511, 512): "Inland waters", (521, 522, 523): "Marine waters",
}  # fmt: skip
UNLABELLED = (122, 123, 124, 131, 132, 133, 141, 142, 332, 334, 335, 423, 999, 0)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def v2_source(tmp_path: Path, archive: Path, maps: Path | None, dataset: str = "demo", **files):
    return open_source(
        dataset, "v2", archive, reference_maps=maps, metadata=files.get("metadata", SHIPPED / METADATA),
        exclusions=files.get("exclusions", SHIPPED / EXCLUSIONS),
    )  # fmt: skip


def label_table_of(tmp_path: Path, patches: list[str]) -> Path:
    """patches.parquet for some real patches with their official labels, all in the training split.

    (v2.0 normalises with the training split's statistics, so an encoded folder needs training patches.)
    """
    metadata = pd.read_parquet(SHIPPED / METADATA).set_index("patch_id").loc[patches]
    labels = [list(v) for v in metadata["labels"]]
    table = pd.DataFrame({"patch": patches, "split": "train", "labels": labels, "original_labels": labels})
    path = tmp_path / "patches.parquet"
    table.to_parquet(path, index=False)
    return path


def tar_of(folder: Path, target: Path) -> Path:
    """A tar (or, ending in .zst, a zstd-compressed tar) of ``folder``, its top folder kept."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=folder.name)
    data = buffer.getvalue()
    target.write_bytes(zstandard.ZstdCompressor().compress(data) if target.name.endswith(".zst") else data)
    return target


# -- the official metadata --------------------------------------------------------------------------


def test_shipped_parquets_have_the_official_md5s():
    assert {name: md5(SHIPPED / name) for name in OFFICIAL_MD5} == OFFICIAL_MD5
    recorded = dict(line.split()[::-1] for line in (SHIPPED / "MD5SUMS").read_text().splitlines())
    assert recorded == OFFICIAL_MD5


def test_config_downloads_the_official_files():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    download = schema["properties"]["data"]["properties"]["v2"]["properties"]["download"]["properties"]
    assert download["metadata"]["default"]["md5"] == OFFICIAL_MD5[METADATA]
    assert download["exclusions"]["default"]["md5"] == OFFICIAL_MD5[EXCLUSIONS]
    assert download["s2"]["default"]["md5"] == "2245ed2d1a93f6ce637d839bc856396e"
    assert download["reference_maps"]["default"]["md5"] == "95d85a222fa983faddcac51a19f28917"


@pytest.fixture(scope="module")
def official_labels(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("v2labels")
    write_labels(v2_source(out, Path("BigEarthNet-S2.tar.zst"), None, dataset="bigearthnet-v2"), out)
    return out


def test_official_split_and_exclusion_counts(official_labels):
    summary = json.loads((official_labels / "summary.json").read_text())
    assert summary["kept"] == {"train": 237_871, "val": 122_342, "test": 119_825}
    assert summary["dropped"]["snow"] == 60_773 and summary["dropped"]["cloud"] == 8_677
    assert summary["patches_in_archive"] == 549_488
    assert (summary["dataset"], summary["version"]) == ("bigearthnet-v2", "2.0")
    counts = pd.read_csv(official_labels / "class_counts.csv", index_col="class")
    assert list(counts.index) == list(classes())
    assert counts.loc["Arable land", "total"] == 188_025
    assert counts["total"].idxmin() == "Beaches, dunes, sands" and counts["total"].min() == 1_316


def test_official_labels_are_in_class_order(official_labels):
    table = read_label_table(official_labels / "patches.parquet")
    row = table.set_index("patch").loc[TEST_PATCH]
    assert row["split"] == "test"
    assert row["labels"] == ["Arable land", "Pastures", "Broad-leaved forest", "Mixed forest"]
    assert table.set_index("patch").loc[VAL_PATCH, "split"] == "val"


def test_metadata_with_a_wrong_md5_is_an_error_naming_it(tmp_path):
    damaged = tmp_path / METADATA
    table = pd.read_parquet(SHIPPED / METADATA)
    table.iloc[:-1].to_parquet(damaged, index=False)
    source = v2_source(tmp_path, tmp_path / "x.tar.zst", None, dataset="bigearthnet-v2", metadata=damaged)
    with pytest.raises(ArchiveError, match=f"{damaged}: md5 .*official {METADATA} has md5 {OFFICIAL_MD5[METADATA]}"):
        write_labels(source, tmp_path / "labels")
    assert not (tmp_path / "labels").exists() or not any((tmp_path / "labels").iterdir())


# -- the real patches and reference map ---------------------------------------------------------------


def test_corine_table_matches_the_v2_pipeline():
    table = corine_to_class_index()
    expected = {code: classes().index(name) for codes, name in V2_TABLE.items() for code in codes}
    expected |= dict.fromkeys(UNLABELLED, NO_CLASS)
    for code in range(1000):
        assert table[code] == expected.get(code, -1), code


@pytest.mark.parametrize("form", ["folder", "S2.tar", "S2.tar.zst"])
def test_real_bands_and_map_encode_bit_identically(tmp_path, form):
    archive = REAL / "BigEarthNet-S2" if form == "folder" else tar_of(REAL / "BigEarthNet-S2", tmp_path / form)
    maps = REAL / "Reference_Maps" if form == "folder" else tar_of(REAL / "Reference_Maps", tmp_path / f"m{form}")
    meta = encode(v2_source(tmp_path, archive, maps), label_table_of(tmp_path, [TEST_PATCH]), tmp_path / "enc")
    assert meta["splits"] == {"train": 1, "val": 0, "test": 0}
    arrays = open_encoded(tmp_path / "enc", "train")
    folder = REAL / "BigEarthNet-S2" / TILE / TEST_PATCH
    for group in BAND_GROUPS:
        for channel, band in enumerate(group.bands):
            with rasterio.open(folder / f"{TEST_PATCH}_{band}.tif") as dataset:
                assert np.array_equal(arrays[group.name][0, channel], dataset.read(1)), band
    class_map = read_reference_maps(tmp_path / "enc", "train")[0]
    assert class_map.dtype == np.uint8 and class_map.shape == (120, 120)
    assert reference_map_labels(class_map) == ["Arable land", "Pastures", "Broad-leaved forest", "Mixed forest"]
    with rasterio.open(REAL / "Reference_Maps" / TILE / TEST_PATCH / f"{TEST_PATCH}_reference_map.tif") as dataset:
        codes = dataset.read(1)
    for code, name in ((211, "Arable land"), (231, "Pastures"), (311, "Broad-leaved forest"), (313, "Mixed forest")):
        assert np.array_equal(class_map == classes().index(name), codes == code)


def test_a_source_without_maps_encodes_none(tmp_path):
    table = label_table_of(tmp_path, [VAL_PATCH, TEST_PATCH])
    encode(v2_source(tmp_path, REAL / "BigEarthNet-S2", None), table, tmp_path / "enc")
    assert read_patch_names(tmp_path / "enc", "train") == [VAL_PATCH, TEST_PATCH]
    assert read_reference_maps(tmp_path / "enc", "train") is None


def _copy_real(tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(REAL, root)
    return root


def test_a_patch_missing_from_an_archive_names_it(tmp_path):
    maps = REAL / "Reference_Maps"  # holds the test patch's map only
    table = label_table_of(tmp_path, [VAL_PATCH, TEST_PATCH])
    with pytest.raises(ValueError, match=f"{maps}: 1 labelled patch.*{VAL_PATCH}"):
        encode(v2_source(tmp_path, REAL / "BigEarthNet-S2", maps), table, tmp_path / "enc")
    root = _copy_real(tmp_path)
    shutil.rmtree(root / "BigEarthNet-S2" / TILE / TEST_PATCH)
    with pytest.raises(ValueError, match=f"{root / 'BigEarthNet-S2'}: 1 labelled patch.*{TEST_PATCH}"):
        encode(v2_source(tmp_path, root / "BigEarthNet-S2", maps), table, tmp_path / "enc")
    assert not (tmp_path / "enc").exists() and not list(tmp_path.glob(".enc*"))


def test_an_unknown_corine_code_names_the_map(tmp_path):
    root = _copy_real(tmp_path)
    path = root / "Reference_Maps" / TILE / TEST_PATCH / f"{TEST_PATCH}_reference_map.tif"
    with rasterio.open(path) as dataset:
        profile, codes = dataset.profile, dataset.read(1)
    codes[5, 5] = 777
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(codes, 1)
    source = v2_source(tmp_path, root / "BigEarthNet-S2", root / "Reference_Maps")
    with pytest.raises(
        UnknownCorineCodeError, match=rf"{TEST_PATCH}_reference_map\.tif: unknown CORINE code\(s\) \[777\]"
    ):
        encode(source, label_table_of(tmp_path, [TEST_PATCH]), tmp_path / "enc")
    assert not (tmp_path / "enc").exists()


def test_a_band_of_the_wrong_size_names_the_file(tmp_path):
    root = _copy_real(tmp_path)
    path = root / "BigEarthNet-S2" / TILE / TEST_PATCH / f"{TEST_PATCH}_B05.tif"
    with rasterio.open(path) as dataset:
        profile = dataset.profile | {"width": 61, "height": 61}
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(np.ones((61, 61), np.uint16), 1)
    source = v2_source(tmp_path, root / "BigEarthNet-S2", root / "Reference_Maps")
    with pytest.raises(ArchiveError, match=rf"{TEST_PATCH}_B05\.tif: size \(61, 61\), expected \(60, 60\)"):
        encode(source, label_table_of(tmp_path, [TEST_PATCH]), tmp_path / "enc")
    assert not (tmp_path / "enc").exists()


# -- the demo in v2.0 layout ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_v2(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo_v2")
    make_demo_archive(root / "archive", SynthConfig(patches=40, seed=4, format="v2"))
    archive = root / "archive"
    source = v2_source(root, archive / "BigEarthNet-S2.tar.zst", archive / "Reference_Maps.tar.zst",
                       metadata=archive / METADATA, exclusions=archive / EXCLUSIONS)  # fmt: skip
    write_labels(source, root / "labels")
    encode(source, root / "labels" / "patches.parquet", root / "encoded")
    return root


def test_demo_v2_metadata_has_the_official_schema(demo_v2):
    official = pd.read_parquet(SHIPPED / EXCLUSIONS).dtypes
    for name in (METADATA, EXCLUSIONS):
        assert pd.read_parquet(demo_v2 / "archive" / name).dtypes.to_dict() == official.to_dict()
    with (
        open(demo_v2 / "archive" / "BigEarthNet-S2.tar.zst", "rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        first = tar.next().name
    parts = first.split("/")
    assert parts[0] == "BigEarthNet-S2" and parts[2].startswith(parts[1]) and parts[1].endswith("_N9999_R022_T33UUP")


def test_demo_v2_labels_are_the_classes_of_its_reference_maps(demo_v2):
    table = read_label_table(demo_v2 / "labels" / "patches.parquet")
    masks = read_masks(demo_v2 / "archive" / "masks.npz")
    meta = json.loads((demo_v2 / "encoded" / "meta.json").read_text())
    assert (meta["dataset"], meta["version"], meta["normalisation"]) == ("demo", "2.0", "training split")
    for split in ("train", "val", "test"):
        names = read_patch_names(demo_v2 / "encoded", split)
        maps = read_reference_maps(demo_v2 / "encoded", split)
        expected = table[table["split"] == split].set_index("patch")["labels"]
        for name, class_map in zip(names, maps, strict=True):
            assert reference_map_labels(class_map) == expected[name]
            assert set(masks[name].ravel().tolist())  # the region maps are keyed by the v2.0 names


def test_training_statistics_are_exact_and_normalise_v2(demo_v2):
    encoded = demo_v2 / "encoded"
    statistics = pd.read_csv(encoded / "training_band_statistics.csv")
    assert list(statistics.columns)[:5] == ["band", "mean", "std", "min", "max"]  # then the percentiles (test_encode)
    assert list(statistics["band"]) == list(BANDS)
    arrays = open_encoded(encoded, "train")
    rows = statistics.set_index("band")
    for group in BAND_GROUPS:
        for channel, band in enumerate(group.bands):
            values = np.asarray(arrays[group.name][:, channel], dtype=np.float64)
            assert rows.loc[band, "mean"] == pytest.approx(values.mean(), rel=1e-12)
            assert rows.loc[band, "std"] == pytest.approx(values.std(), rel=1e-10)
            assert (rows.loc[band, "min"], rows.loc[band, "max"]) == (values.min(), values.max())
    normalising = read_band_statistics(encoded / "band_statistics.csv")
    assert normalising.mean == pytest.approx(rows["mean"].to_dict()) and normalising.std == pytest.approx(
        rows["std"].to_dict()
    )


def test_demo_v1_reference_maps_follow_its_region_masks(demo, demo_labels, tmp_path):
    source = open_source("demo", "v1", demo / "BigEarthNet-demo.tar.gz", reference_maps=demo / "Reference_Maps.tar.zst",
                         lists=list_paths(demo / "lists"), band_statistics=demo / "band_statistics.csv")  # fmt: skip
    meta = encode(source, demo_labels / "patches.parquet", tmp_path / "enc")
    assert (meta["dataset"], meta["version"]) == ("demo", "1.0")
    assert (tmp_path / "enc" / "band_statistics.csv").read_bytes() == (demo / "band_statistics.csv").read_bytes()
    masks = read_masks(demo / "masks.npz")
    names, maps = read_patch_names(tmp_path / "enc", "train"), read_reference_maps(tmp_path / "enc", "train")
    for name, class_map in zip(names, maps, strict=True):
        for index, label in enumerate(classes()):
            assert np.array_equal(class_map == index, class_region(masks[name], label)), (name, label)


def test_a_source_lacking_its_label_files_says_which(tmp_path):
    with pytest.raises(ValueError, match="the bigearthnet-v2 source needs --metadata, --exclusions"):
        open_source("bigearthnet-v2", "v1", tmp_path)
    with pytest.raises(ValueError, match="v1 source needs --train, --val, --test, --snow, --cloud, --band"):
        open_source("bigearthnet-v1", "v2", tmp_path)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [("labels", ["Arable land", "Lava fields"], r"unknown BigEarthNet-19 label\(s\) \['Lava fields'\]"),
     ("split", "holdout", r"unknown split\(s\) \['holdout'\]")],
)  # fmt: skip
def test_bad_metadata_is_an_error_naming_the_file(tmp_path, column, value, message):
    table = pd.read_parquet(SHIPPED / EXCLUSIONS).head(3)
    table.at[1, column] = value
    table.to_parquet(tmp_path / METADATA, index=False)
    source = v2_source(tmp_path, tmp_path, None, metadata=tmp_path / METADATA)
    with pytest.raises(ArchiveError, match=f"{tmp_path / METADATA}: .*{message}"):
        write_labels(source, tmp_path / "labels")
    assert not (tmp_path / "labels" / "patches.parquet").exists()
