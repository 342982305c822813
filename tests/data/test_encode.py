"""Reading archives, the label stage and the encoder, on the demo archive and on real BigEarthNet patches."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import tarfile
import tracemalloc
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import rasterio
import zstandard

from benloss.data import archive as archive_module
from benloss.data.archive import ArchiveError, iter_patches
from benloss.data.encode import encode_archive
from benloss.data.encoded import open_encoded, read_patch_names
from benloss.data.labels import read_label_table, run_labels
from benloss.data.prepare import prepare
from benloss.data.sources import open_source
from benloss.data.streams import READ_AHEAD_BLOCK, READ_AHEAD_BLOCKS, open_decompressed
from benloss.data.synth import SynthConfig, make_demo_archive, read_masks
from benloss.data.training_band_statistics import BandAccumulator
from benloss.facts.bands import BAND_GROUPS, BAND_PIXELS, BAND_STARTS, BANDS, PATCH_PIXELS, read_band_statistics
from benloss.facts.nomenclature import classes, to_bigearthnet19
from benloss.facts.splits import SPLITS, read_list, write_list

from ..support import EXAMPLE_ARCHIVE, ROOT, demo_lists
from .support import OFFICIAL_LISTS, rewrite_archive

# -- the demo archive -------------------------------------------------------------------------------


def test_demo_archive_has_bigearthnet_layout(demo):
    with tarfile.open(demo / "BigEarthNet-demo.tar.gz") as tar:
        names = tar.getnames()
        first = names[0].split("/")[1]
        metadata = json.load(tar.extractfile(f"BigEarthNet-v1.0/{first}/{first}_labels_metadata.json"))
        band = tar.extractfile(f"BigEarthNet-v1.0/{first}/{first}_B8A.tif").read()
    assert all(name.startswith("BigEarthNet-v1.0/") for name in names)
    assert not any(name.endswith("_B10.tif") for name in names)
    assert set(metadata) == {"labels", "coordinates", "projection", "tile_source", "acquisition_date"}
    assert set(metadata["coordinates"]) == {"ulx", "uly", "lrx", "lry"}
    assert metadata["coordinates"]["lrx"] - metadata["coordinates"]["ulx"] == 1200
    with rasterio.MemoryFile(band) as memory, memory.open() as dataset:
        assert dataset.count == 1 and dataset.dtypes == ("uint16",) and dataset.shape == (60, 60)
        assert dataset.nodata is None and dataset.crs.to_epsg() // 100 == 326
        assert dataset.transform.a == 20 and dataset.transform.c == metadata["coordinates"]["ulx"]


def test_demo_names_include_hours_without_leading_zero(tmp_path):
    make_demo_archive(tmp_path / "a", SynthConfig(patches=40, seed=5))
    names = [p.name for p in iter_patches(tmp_path / "a" / "BigEarthNet-demo.tar.gz", read_bands=False)]
    clocks = [name.split("T")[1].split("_")[0] for name in names]
    assert any(len(clock) == 5 for clock in clocks) and any(len(clock) == 6 for clock in clocks)


def test_demo_is_deterministic(tmp_path, demo):
    make_demo_archive(tmp_path / "again", SynthConfig(patches=48, seed=3))
    for name in ("band_statistics.csv", "lists/train.csv", "lists/patches_with_seasonal_snow.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (demo / name).read_bytes()
    first, second = read_masks(demo / "masks.npz"), read_masks(tmp_path / "again" / "masks.npz")
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


def test_demo_labels_are_long_tailed_and_paint_regions(tmp_path):
    make_demo_archive(tmp_path / "big", SynthConfig(patches=400, seed=0))
    patches = list(iter_patches(tmp_path / "big" / "BigEarthNet-demo.tar.gz", read_bands=False))
    counts = pd.Series([c for p in patches for c in to_bigearthnet19(p.labels())]).value_counts()
    assert counts.max() >= 10 * counts.min()
    assert any(not to_bigearthnet19(p.labels()) for p in patches)  # some carry only dropped labels
    masks = read_masks(tmp_path / "big" / "masks.npz")
    assert len(masks) == 400 and all(m.shape == (120, 120) for m in masks.values())


def test_demo_lists_use_the_official_format(demo):
    raw = (demo / "lists" / "train.csv").read_bytes()
    assert raw.endswith(b"\r\n") and b"," not in raw and not raw.startswith(b"patch")


# -- labels --------------------------------------------------------------------------------------------


def test_label_table_keeps_and_drops_as_listed(demo, demo_labels):
    table = read_label_table(demo_labels / "patches.parquet")
    summary = json.loads((demo_labels / "summary.json").read_text())
    lists = {k: set(read_list(v)) for k, v in demo_lists(demo).items()}
    assert set(table["patch"]) == lists["train"] | lists["val"] | lists["test"]
    assert not set(table["patch"]) & (lists["snow"] | lists["cloud"])
    assert summary["dropped"]["snow"] == len(lists["snow"]) and summary["dropped"]["cloud"] == len(lists["cloud"])
    assert sum(summary["kept"].values()) + sum(summary["dropped"].values()) == summary["patches_in_archive"] == 48
    assert all(labels and labels == [c for c in classes() if c in labels] for labels in table["labels"])


def test_class_counts_match_the_table(demo_labels):
    table = read_label_table(demo_labels / "patches.parquet")
    counts = pd.read_csv(demo_labels / "class_counts.csv", index_col="class")
    assert list(counts.index) == list(classes())
    for split in ("train", "val", "test"):
        labels = table.loc[table["split"] == split, "labels"]
        assert counts[split].to_dict() == {c: sum(c in row for row in labels) for c in classes()}


def test_unknown_label_is_an_error_naming_the_patch(demo, tmp_path):
    def change(name, data):
        if name.endswith("_labels_metadata.json") and "victim" not in change.__dict__:
            change.victim = name
            document = json.loads(data)
            document["labels"] = ["Lava fields"]
            return json.dumps(document).encode()
        return data

    rewrite_archive(demo / "BigEarthNet-demo.tar.gz", tmp_path / "bad.tar.gz", change)
    patch = change.victim.split("/")[1]
    with pytest.raises(ValueError, match=f"{patch}.*Lava fields"):
        run_labels(tmp_path / "bad.tar.gz", demo_lists(demo), tmp_path / "out")
    assert not (tmp_path / "out" / "patches.parquet").exists()


def test_malformed_json_is_an_error_naming_the_file(demo, tmp_path):
    def change(name, data):
        return b"{not json" if name.endswith("_labels_metadata.json") else data

    rewrite_archive(demo / "BigEarthNet-demo.tar.gz", tmp_path / "bad.tar.gz", change)
    with pytest.raises(ArchiveError, match=r"labels_metadata\.json is not valid JSON"):
        run_labels(tmp_path / "bad.tar.gz", demo_lists(demo), tmp_path / "out")


def test_patch_in_two_splits_is_an_error(demo, tmp_path):
    lists = demo_lists(demo)
    shared = read_list(lists["train"])[0]
    write_list(tmp_path / "val.csv", [*read_list(lists["val"]), shared])
    with pytest.raises(ValueError, match=f"{shared} is in both the train list and the val list"):
        run_labels(demo / "BigEarthNet-demo.tar.gz", lists | {"val": tmp_path / "val.csv"}, tmp_path / "out")


def test_listed_patch_absent_from_archive_is_counted(demo, tmp_path, caplog):
    lists = demo_lists(demo)
    write_list(tmp_path / "test.csv", [*read_list(lists["test"]), "S2A_MSIL2A_20170101T101010_1_1"])
    summary = run_labels(demo / "BigEarthNet-demo.tar.gz", lists | {"test": tmp_path / "test.csv"}, tmp_path / "o")
    assert summary["listed_but_absent"] == {"train": 0, "val": 0, "test": 1}
    assert "absent from the archive" in caplog.text


def test_missing_band_names_the_patch(demo, tmp_path):
    patch = read_list(demo_lists(demo)["train"])[0]

    def change(name, data):
        return None if name.endswith("_B05.tif") and f"/{patch}/" in name else data

    rewrite_archive(demo / "BigEarthNet-demo.tar.gz", tmp_path / "bad.tar.gz", change)
    with pytest.raises(ArchiveError, match=f"{patch} lacks B05"):
        list(iter_patches(tmp_path / "bad.tar.gz", read_bands=False))


def test_truncated_archive_is_an_error(demo, tmp_path):
    data = (demo / "BigEarthNet-demo.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        list(iter_patches(tmp_path / "cut.tar.gz"))


def test_corrupt_tif_stops_the_encoder_and_leaves_nothing(demo, demo_labels, tmp_path):
    def change(name, data):
        return b"II*\x00garbage" + data[40:100] if name.endswith("_B03.tif") else data

    rewrite_archive(demo / "BigEarthNet-demo.tar.gz", tmp_path / "bad.tar.gz", change)
    with pytest.raises(ArchiveError, match=r"_B03\.tif: not a readable GeoTIFF"):
        encode_archive(tmp_path / "bad.tar.gz", demo_labels / "patches.parquet", demo / "band_statistics.csv",
                       tmp_path / "encoded")  # fmt: skip
    assert not (tmp_path / "encoded").exists()
    assert not list(tmp_path.glob(".encoded*"))


def test_wrong_size_band_is_rejected(demo, demo_labels, tmp_path):
    from rasterio.transform import from_origin

    def change(name, data):
        if not name.endswith("_B01.tif"):
            return data
        with rasterio.MemoryFile() as memory:
            profile = {"driver": "GTiff", "height": 21, "width": 21, "count": 1, "dtype": "uint16",
                       "crs": "EPSG:32633", "transform": from_origin(0, 0, 60, 60)}  # fmt: skip
            with memory.open(**profile) as dataset:
                dataset.write(np.zeros((21, 21), np.uint16), 1)
            return memory.read()

    rewrite_archive(demo / "BigEarthNet-demo.tar.gz", tmp_path / "bad.tar.gz", change)
    with pytest.raises(ArchiveError, match=r"_B01\.tif: size \(21, 21\), expected \(20, 20\)"):
        encode_archive(tmp_path / "bad.tar.gz", demo_labels / "patches.parquet", demo / "band_statistics.csv",
                       tmp_path / "encoded")  # fmt: skip


# -- encoding -----------------------------------------------------------------------------------------


def test_encoded_arrays_equal_rasterio_reads(demo, demo_encoded, tmp_path):
    with tarfile.open(demo / "BigEarthNet-demo.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    meta = json.loads((demo_encoded / "meta.json").read_text())
    assert meta["groups"]["10m"]["bands"] == ["B02", "B03", "B04", "B08"]
    for split in ("train", "test"):
        arrays = open_encoded(demo_encoded, split)
        for row, name in enumerate(read_patch_names(demo_encoded, split)[:5]):
            for group in BAND_GROUPS:
                for channel, band in enumerate(group.bands):
                    with rasterio.open(tmp_path / "BigEarthNet-v1.0" / name / f"{name}_{band}.tif") as dataset:
                        assert np.array_equal(arrays[group.name][row, channel], dataset.read(1)), (name, band)


def test_encoded_labels_follow_the_table(demo_labels, demo_encoded):
    table = read_label_table(demo_labels / "patches.parquet")
    for split in ("train", "val", "test"):
        rows = table[table["split"] == split]
        assert read_patch_names(demo_encoded, split) == list(rows["patch"])
        labels = open_encoded(demo_encoded, split)["labels"]
        for vector, names in zip(labels, rows["labels"], strict=True):
            assert [classes()[i] for i in np.flatnonzero(vector)] == names


def test_folder_and_zstd_archives_give_the_same_arrays(demo, demo_labels, demo_encoded, tmp_path):
    with tarfile.open(demo / "BigEarthNet-demo.tar.gz") as tar:
        tar.extractall(tmp_path / "folder", filter="data")
    plain = gzip.decompress((demo / "BigEarthNet-demo.tar.gz").read_bytes())
    (tmp_path / "demo.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(plain))
    for source, name in ((tmp_path / "folder", "f"), (tmp_path / "demo.tar.zst", "z")):
        encode_archive(source, demo_labels / "patches.parquet", demo / "band_statistics.csv", tmp_path / name)
        for split in ("train", "val", "test"):
            ours, reference = open_encoded(tmp_path / name, split), open_encoded(demo_encoded, split)
            assert all(np.array_equal(ours[k], reference[k]) for k in reference)


def test_prepare_memory_stays_flat(tmp_path, monkeypatch):
    """Python-side memory grows only by a patch's bookkeeping (its name, labels and row), never by its pixels.

    A patch's bands take 160 kB; each further patch may add 3 kB (a TarFile's list of every header it read
    once added 11 kB, which for the 590,326 patches of BigEarthNet would have been 6 GB). That bound is checked
    on peaks measured without the read-ahead thread: how many of its blocks are in flight at the moment of the
    peak depends on how far ahead the thread has got, which varies from run to run by a block (1 MB, the
    bookkeeping of 350 patches). With the thread the peaks may differ besides by at most what it can hold:
    ``READ_AHEAD_BLOCKS`` waiting, the one it decodes or holds, the one being read, the reader's buffer and one
    to spare, which is less than the pixels of the patches added.
    """
    opened = []

    def open_stream(path, read_ahead):
        opened.append(read_ahead)
        return open_decompressed(path, read_ahead)

    for patches in (60, 240):
        make_demo_archive(tmp_path / str(patches), SynthConfig(patches=patches, seed=9))
    peaks = {}
    for read_ahead in (False, True):
        monkeypatch.setattr(archive_module, "open_decompressed", lambda path, r=read_ahead: open_stream(path, r))
        for patches in (60, 60, 240):  # the first run pays for imports and caches
            folder = tmp_path / str(patches)
            source = open_source("demo", "v1", folder / "BigEarthNet-demo.tar.gz", lists=demo_lists(folder),
                                 band_statistics=folder / "band_statistics.csv")  # fmt: skip
            shutil.rmtree(folder / "out", ignore_errors=True)
            tracemalloc.start()
            prepare(source, folder / "out" / "labels", folder / "out" / "encoded")
            peaks[read_ahead, patches] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert opened.count(False) == opened.count(True) >= 3  # every prepare read its archive through open_stream
    kept = {n: sum(len(read_patch_names(tmp_path / str(n) / "out" / "encoded", s)) for s in SPLITS) for n in (60, 240)}
    added = kept[240] - kept[60]
    in_flight = (READ_AHEAD_BLOCKS + 4) * READ_AHEAD_BLOCK
    assert added > 100 and in_flight < added * 160_000
    assert (peaks[False, 240] - peaks[False, 60]) / added < 3_000
    assert peaks[True, 240] - peaks[True, 60] < added * 3_000 + in_flight


# -- real BigEarthNet patches (bigearthnet-common 2.8.0's example archive) -----------------------------


def test_real_patches_are_read_from_tar_bz2():
    patches = {p.name: p for p in iter_patches(EXAMPLE_ARCHIVE)}
    assert len(patches) == 6
    assert "S2B_MSIL2A_20170924T93020_69_24" in patches  # an hour without leading zero
    quirky = patches["S2B_MSIL2A_20170924T93020_69_24"]
    assert to_bigearthnet19(quirky.labels()) == [
        "Coniferous forest", "Mixed forest", "Transitional woodland, shrub", "Inland wetlands", "Inland waters"
    ]  # fmt: skip
    assert set(quirky.bands) == set(BANDS)


def test_real_patches_through_labels_and_encoder(tmp_path):
    summary = run_labels(EXAMPLE_ARCHIVE, OFFICIAL_LISTS, tmp_path / "labels")
    assert summary["kept"] == {"train": 4, "val": 0, "test": 1}
    assert summary["dropped"]["snow"] == 1  # S2B_MSIL2A_20180204T94161_57_38 is in the seasonal snow list
    encode_archive(EXAMPLE_ARCHIVE, tmp_path / "labels" / "patches.parquet", ROOT / "resources/band_statistics.csv",
                   tmp_path / "encoded")  # fmt: skip
    arrays = open_encoded(tmp_path / "encoded", "train")
    assert arrays["10m"].shape == (4, 4, 120, 120) and open_encoded(tmp_path / "encoded", "val")["60m"].shape[0] == 0
    names = read_patch_names(tmp_path / "encoded", "train")
    with tarfile.open(EXAMPLE_ARCHIVE) as tar:
        member = tar.extractfile(f"BigEarthNet-S2-Example/{names[0]}/{names[0]}_B8A.tif").read()
    with rasterio.MemoryFile(member) as memory, memory.open() as dataset:
        assert np.array_equal(arrays["20m"][0, 3], dataset.read(1))


def test_official_statistics_are_shipped():
    statistics = read_band_statistics(ROOT / "resources/band_statistics.csv")
    assert statistics.mean["B02"] == pytest.approx(429.943, abs=1e-3)
    assert statistics.std["B04"] == pytest.approx(675.887, abs=1e-3)
    assert statistics.mean["B08"] == pytest.approx(2218.946, abs=1e-3)


# -- the training split's band statistics ------------------------------------------------------------


def sorted_percentile(values: np.ndarray, q: float) -> float:
    """The q-th percentile by its definition (Hyndman & Fan's type 1, numpy's ``inverted_cdf``): the k-th smallest
    value, k = ceil(q n / 100) in exact arithmetic (numpy's floats round 99.9 / 100 · 60,000 up to 59,941)."""
    k = max(1, math.ceil(Fraction(str(q)) * len(values) / 100))
    return float(np.sort(values)[k - 1])


def test_training_statistics_hold_each_bands_percentile_bounds(demo_encoded):
    statistics = pd.read_csv(demo_encoded / "training_band_statistics.csv").set_index("band")
    assert list(statistics.columns) == ["mean", "std", "min", "max", "p0.1", "p99.9"]
    arrays = open_encoded(demo_encoded, "train")
    for group in BAND_GROUPS:
        for channel, band in enumerate(group.bands):
            values = np.asarray(arrays[group.name][:, channel]).ravel()
            low, high = sorted_percentile(values, 0.1), sorted_percentile(values, 99.9)
            assert (statistics.loc[band, "p0.1"], statistics.loc[band, "p99.9"]) == (low, high)
            assert values.min() <= low <= high <= values.max()


@pytest.mark.parametrize("q", [0.1, 50, 99.9, 100])
def test_percentiles_are_exact_across_histogram_blocks(q):
    rng = np.random.default_rng(7)
    patches = [rng.integers(0, 65536, PATCH_PIXELS, dtype=np.uint16) for _ in range(150)]  # over many blocks
    patches[3][:10] = 65535  # the largest value a band can hold is counted too
    accumulator = BandAccumulator()
    for pixels in patches:
        accumulator.add(pixels)
        pixels[:] = 0  # the encoder reuses its buffer: what was added must not change
    rng = np.random.default_rng(7)
    originals = [rng.integers(0, 65536, PATCH_PIXELS, dtype=np.uint16) for _ in range(150)]
    originals[3][:10] = 65535
    for band in BANDS:
        values = np.concatenate([p[BAND_STARTS[band] :][: BAND_PIXELS[band]] for p in originals])
        assert accumulator.percentile(band, q) == sorted_percentile(values, q)
