"""The one-pass data stage: the label stage's and the encoder's outputs, byte for byte, from one read."""

from __future__ import annotations

import json
import re
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from benloss.data import archive as archive_module
from benloss.data import diskspace
from benloss.data import encode as encode_module
from benloss.data.archive import ArchiveError
from benloss.data.encode import compact_rows, encode
from benloss.data.encoded import open_encoded, read_patch_names
from benloss.data.labels import write_labels
from benloss.data.prepare import prepare
from benloss.data.selection import EVERYTHING, Selection
from benloss.data.sources import open_source
from benloss.data.sources.bigearthnet_v2 import EXCLUSIONS, METADATA
from benloss.data.streams import READ_AHEAD_BLOCK, ReadAhead, open_decompressed
from benloss.data.synth import SynthConfig, make_demo_archive
from benloss.data.tarstream import iter_files
from benloss.facts.nomenclature import conversion
from benloss.facts.splits import read_list, write_list

from ..support import EXAMPLE_ARCHIVE, ROOT, demo_lists
from .support import Usage, lists_with_an_example_in_val, rewrite_archive

ABSENT = "S2A_MSIL2A_20170613T101031_99_99"


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def two_passes(source, out: Path) -> dict[str, bytes]:
    """The label stage, then the encoder reading its table: the reference the one pass must equal."""
    write_labels(source, out / "labels")
    encode(source, out / "labels" / "patches.parquet", out / "encoded")
    return files_of(out)


def one_pass(source, out: Path, selection: Selection = EVERYTHING) -> dict[str, bytes]:
    prepare(source, out / "labels", out / "encoded", selection)
    return files_of(out)


def without_summary(files: dict[str, bytes]) -> tuple[dict[str, bytes], dict]:
    """The files but ``labels/summary.json``, and that summary read."""
    rest = dict(files)
    return rest, json.loads(rest.pop("labels/summary.json"))


@pytest.fixture(scope="module")
def demo_with_holes(demo, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """The demo archive and lists with listed patches the table must drop: one train and one val patch whose
    labels all leave BigEarthNet-19 (their rows are written, then compacted away) and one train patch absent
    from the archive."""
    folder = tmp_path_factory.mktemp("holes")
    lists = demo_lists(demo)
    victims = {read_list(lists["train"])[1], read_list(lists["val"])[0]}
    dropped_label = next(name for name, new in conversion().items() if new is None)

    def change(name: str, data: bytes) -> bytes:
        if name.endswith("_labels_metadata.json") and name.split("/")[1] in victims:
            return json.dumps(json.loads(data) | {"labels": [dropped_label]}).encode()
        return data

    rewrite_archive(demo / "BigEarthNet-demo.tar.gz", folder / "holes.tar.gz", change)
    write_list(folder / "train.csv", sorted([*read_list(lists["train"]), ABSENT]))
    return folder / "holes.tar.gz", lists | {"train": folder / "train.csv"}


def v1_demo_source(demo: Path, lists: dict[str, Path], archive: Path | None = None):
    return open_source("demo", "v1", archive or demo / "BigEarthNet-demo.tar.gz", lists=lists,
                       band_statistics=demo / "band_statistics.csv",
                       reference_maps=demo / "Reference_Maps.tar.zst")  # fmt: skip


def test_one_pass_equals_labels_then_encode_byte_for_byte(demo, demo_with_holes, tmp_path):
    """(The absent patch needs ``allow_missing``; the summary then also counts absent reference maps.)"""
    archive, lists = demo_with_holes
    source = v1_demo_source(demo, lists, archive)
    reference = two_passes(source, tmp_path / "two")
    ours = one_pass(source, tmp_path / "one", Selection(allow_missing=True))
    (reference, reference_summary), (ours, summary) = without_summary(reference), without_summary(ours)
    assert ours.keys() == reference.keys() and "encoded/train_reference_maps.npy" in ours
    assert [name for name in ours if ours[name] != reference[name]] == []
    assert summary == reference_summary | {"reference_maps_absent": {"train": 0, "val": 0, "test": 0}}
    # the two victims, and any patch the synthetic archive itself labels outside BigEarthNet-19 (unless it is
    # dropped first, for snow or cloud)
    excluded = {*read_list(lists["snow"]), *read_list(lists["cloud"])}
    unlabelled = [p.name for p in archive_module.iter_patches(archive, read_bands=False) if p.name not in excluded
                  and not any(conversion()[label] for label in json.loads(p.metadata)["labels"])]  # fmt: skip
    assert summary["dropped"]["no_19_class_label"] == len(unlabelled) >= 2
    assert summary["listed_but_absent"]["train"] == 1
    # the holes were real: rows reserved for the unlabelled and absent patches, then compacted away
    candidates = source.labeller().candidates()
    for split, holes in (("train", 2), ("val", 1)):
        kept = read_patch_names(tmp_path / "one" / "encoded", split)
        assert len(candidates[split]) == len(kept) + holes and set(kept) < set(candidates[split])


def test_one_pass_equals_two_passes_for_the_v2_layout(tmp_path):
    folder = tmp_path / "archive"
    make_demo_archive(folder, SynthConfig(patches=30, seed=4, format="v2"))
    source = open_source("demo", "v2", folder / "BigEarthNet-S2.tar.zst", metadata=folder / METADATA,
                         exclusions=folder / EXCLUSIONS, reference_maps=folder / "Reference_Maps.tar.zst")  # fmt: skip
    reference, ours = two_passes(source, tmp_path / "two"), one_pass(source, tmp_path / "one")
    assert ours == reference and "encoded/val_reference_maps.npy" in ours


@pytest.mark.parametrize("case", ["corrupt band", "unknown label"])
def test_bad_input_names_the_file_and_leaves_neither_output(demo, tmp_path, case):
    def change(name, data):
        if case == "corrupt band" and name.endswith("_B03.tif"):
            return b"II*\x00garbage" + data[40:100]
        if case == "unknown label" and name.endswith("_labels_metadata.json"):
            return json.dumps({"labels": ["Lava fields"]}).encode()
        return data

    rewrite_archive(demo / "BigEarthNet-demo.tar.gz", tmp_path / "bad.tar.gz", change)
    source = v1_demo_source(demo, demo_lists(demo), tmp_path / "bad.tar.gz")
    expected = r"_B03\.tif: not a readable GeoTIFF" if case == "corrupt band" else r"bad\.tar\.gz: .*Lava fields"
    with pytest.raises((ArchiveError, ValueError), match=expected):
        prepare(source, tmp_path / "out" / "labels", tmp_path / "out" / "encoded")
    assert not (tmp_path / "out" / "encoded").exists()
    assert [path for path in tmp_path.joinpath("out").rglob("*") if not path.is_dir()] == []


@pytest.mark.parametrize(
    "keep",
    [[1] * 7, [0, 1, 1, 0, 1, 1, 0], [0] * 6 + [1], [1, 0, 1, 0, 1, 0, 1], [0] * 7, [1] * 6 + [0]],
)
def test_compact_rows_equals_saving_the_kept_rows(tmp_path, monkeypatch, keep):
    monkeypatch.setattr(encode_module, "MOVE_CHUNK", 1000)  # rows of 1,200 bytes: moves span several chunks
    array = np.random.default_rng(len(keep) + sum(keep)).integers(0, 65535, (7, 4, 10, 15), dtype=np.uint16)
    np.save(tmp_path / "all.npy", array)
    np.save(tmp_path / "kept.npy", array[np.array(keep, bool)])
    compact_rows(tmp_path / "all.npy", np.array(keep, bool))
    assert (tmp_path / "all.npy").read_bytes() == (tmp_path / "kept.npy").read_bytes()


def test_compact_rows_rejects_a_mask_of_the_wrong_length(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match=r"a\.npy: 3 rows, but 2 keep flags"):
        compact_rows(tmp_path / "a.npy", np.ones(2, bool))


def test_read_ahead_gives_the_streams_bytes_and_stops_when_closed(demo):
    archive = demo / "BigEarthNet-demo.tar.gz"
    with open_decompressed(archive, read_ahead=False) as plain, open_decompressed(archive) as ahead:
        assert ahead.read() == plain.read()
    stream = open_decompressed(archive)
    stream.read(1000)  # the thread has more blocks than the queue holds: it waits to hand them over
    stream.close()
    assert not any(thread.name == "read-ahead" for thread in threading.enumerate())


def test_read_ahead_raises_the_threads_error_in_the_reader():
    class Failing:
        def read(self, size: int) -> bytes:
            raise OSError("disk gone")

        def close(self) -> None:
            pass

    reader = ReadAhead(Failing())
    with pytest.raises(OSError, match="disk gone"):
        reader.read(10)
    reader.close()


def test_prepared_demo_matches_its_lists(demo, demo_encoded):
    """The session's prepared demo (every other data test reads it) holds each listed, kept patch once."""
    lists = demo_lists(demo)
    for split in ("train", "val", "test"):
        names = read_patch_names(demo_encoded, split)
        assert names == sorted(read_list(lists[split])) and len(open_encoded(demo_encoded, split)["10m"]) == len(names)


def test_real_patches_one_pass_equals_two_passes(tmp_path):
    """Six real patches against the official lists (one training patch moved to val, so that no split is left
    empty): 519,284 listed candidates, five kept, the others absent (``allow_missing``). The disk check is
    bounded by what the archive can hold, and the rows of the absent candidates are never written."""
    source = open_source("bigearthnet-v1", "v1", EXAMPLE_ARCHIVE, lists=lists_with_an_example_in_val(tmp_path),
                         band_statistics=ROOT / "resources" / "band_statistics.csv")  # fmt: skip
    reference = two_passes(source, tmp_path / "two")
    ours = one_pass(source, tmp_path / "one", Selection(allow_missing=True))
    (reference, reference_summary), (ours, summary) = without_summary(reference), without_summary(ours)
    assert ours == reference
    assert summary == reference_summary and summary["kept"] == {"train": 3, "val": 1, "test": 1}
    assert sum(summary["listed_but_absent"].values()) == 519_284 - 5
    assert len(ours["encoded/train_10m.npy"]) < 1_000_000


@pytest.mark.parametrize("layout", ["tar.bz2", "folder"])
def test_disk_check_counts_what_the_archive_can_hold_not_every_listed_patch(tmp_path, monkeypatch, layout):
    """519,284 listed patches would take 83 GB; the six-patch archive needs a few megabytes, which 1 GB holds
    (the label table asks for about 0.5 GB)."""
    archive = EXAMPLE_ARCHIVE
    if layout == "folder":
        with tarfile.open(EXAMPLE_ARCHIVE) as tar:
            tar.extractall(tmp_path / "extracted", filter="data")
        archive = tmp_path / "extracted"
    source = open_source("bigearthnet-v1", "v1", archive, lists=lists_with_an_example_in_val(tmp_path),
                         band_statistics=ROOT / "resources" / "band_statistics.csv")  # fmt: skip
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda path: Usage(10**12, 10**12 - 10**9, 10**9))
    prepare(source, tmp_path / "ok" / "labels", tmp_path / "ok" / "encoded", Selection(allow_missing=True))
    assert len(read_patch_names(tmp_path / "ok" / "encoded", "train")) == 3


def test_a_disk_too_small_for_the_arrays_stops_the_step_before_it_writes(demo, tmp_path, monkeypatch):
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda path: Usage(10**12, 10**12 - 10**5, 10**5))
    with pytest.raises(diskspace.DiskSpaceError, match="the encoded arrays take about"):
        prepare(v1_demo_source(demo, demo_lists(demo)), tmp_path / "labels", tmp_path / "encoded")
    assert not (tmp_path / "encoded").exists() and not (tmp_path / "labels" / "patches.parquet").exists()


def test_a_cut_archive_stops_within_a_block_of_where_it_would_without_read_ahead(demo, tmp_path, monkeypatch):
    """A failing decoder drops what it decoded in its last call: with read-ahead the error may name a member up
    to one block (1 MB, under seven patches) earlier, never a later one."""
    data = (demo / "BigEarthNet-demo.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) * 55 // 100])
    with open_decompressed(demo / "BigEarthNet-demo.tar.gz") as stream:
        order = [name for name, _ in iter_files(stream, lambda name: False)]
    last_good = []
    for read_ahead in (False, True):
        monkeypatch.setattr(archive_module, "open_decompressed", lambda path, r=read_ahead: open_decompressed(path, r))
        with pytest.raises(ArchiveError, match="truncated or corrupt after") as error:
            list(archive_module.iter_patches(tmp_path / "cut.tar.gz"))
        last_good.append(order.index(re.search(r"after (\S+\.(tif|json))", str(error.value)).group(1)))
    plain, ahead = last_good
    assert plain > 0 and 0 <= plain - ahead <= READ_AHEAD_BLOCK // 12_000  # 13 members, 160 kB, a patch
