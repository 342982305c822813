"""The encode stage: one streaming pass from the archive into per-split, memory-mappable uint16 arrays.

Layout of the output folder (described again in its ``meta.json``)::

    <split>_10m.npy                (N, 4, 120, 120) uint16   B02 B03 B04 B08
    <split>_20m.npy                (N, 6, 60, 60)   uint16   B05 B06 B07 B8A B11 B12
    <split>_60m.npy                (N, 2, 20, 20)   uint16   B01 B09
    <split>_labels.npy             (N, 19)          uint8    multi-hot, official class order
    <split>_reference_maps.npy     (N, 120, 120)    uint8    class index per pixel, 255 = no class
                                                             (only for sources with reference maps)
    <split>_patches.txt            N patch names, row order of the arrays
    training_band_statistics.csv   band, mean, std, min, max, 0.1st and 99.9th percentile of the training
                                   split (exact; the percentiles are LRP's input bounds)
    band_statistics.csv            the per-band mean/std the trainer normalises with: the source's
                                   file (v1.0, demo in v1.0 layout) or the training split's (v2.0)

Rows follow ``patches.parquet``; arrays are preallocated on disk and filled as patches stream by, so
peak memory does not grow with the archive. Reference maps stream from their own archive afterwards.
The workflow runs this pass together with the label stage (``benloss.data.prepare``); ``encode`` alone
re-encodes from an existing label table.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from benloss.atomic import atomic_outputs
from benloss.data.archive import MAP_SIZE, decode_band, patch_capacity
from benloss.data.diskspace import DiskSpaceError, require_free_space
from benloss.data.labels import read_label_table
from benloss.data.selection import EVERYTHING, Selection, absent_by_split, require_every_split, settle_absent
from benloss.data.sources import Source
from benloss.data.sources.base import KnownLabels, Labeller, iter_reference_maps
from benloss.data.sources.bigearthnet_v1 import BigEarthNetV1
from benloss.data.training_band_statistics import BandAccumulator, split_statistics
from benloss.errors import InputError
from benloss.facts.bands import (
    BAND_GROUPS,
    BAND_PIXELS,
    BAND_SIZE,
    BAND_STARTS,
    BANDS,
    DTYPE,
    PATCH_PIXELS,
    official_band_statistics,
)
from benloss.facts.nomenclature import NO_CLASS, classes, multi_hot
from benloss.facts.splits import SPLITS
from benloss.layout import ENCODED_FILES, LABEL_FILES, REFERENCE_MAPS, encoded_array, patch_list

log = logging.getLogger(__name__)
BAND_PARTS: tuple[str, ...] = tuple(group.name for group in BAND_GROUPS)
#: Bytes per read and write when compaction moves rows up (bounds its memory).
MOVE_CHUNK = 64 << 20


def encoded_bytes(patches: int, with_maps: bool = False) -> int:
    """Disk bytes of the encoded arrays of ``patches`` patches: their bands, label vectors and reference maps."""
    return patches * (PATCH_PIXELS * np.dtype(DTYPE).itemsize + len(classes()) + (MAP_SIZE**2 if with_maps else 0))


def encode_archive(archive: Path, label_table: Path, band_statistics: Path, outdir: Path) -> dict:
    """Encode a v1.0 archive normalised by ``band_statistics`` (the shortcut of ``encode`` for v1.0)."""
    return encode(BigEarthNetV1(Path(archive), {}, Path(band_statistics)), label_table, outdir)


def encode(source: Source, label_table: Path, outdir: Path) -> dict:
    """Encode the kept patches of ``label_table`` (an earlier label stage's) from ``source`` into ``outdir``."""
    labeller = KnownLabels(read_label_table(label_table), {})
    with atomic_outputs(Path(outdir)) as (tmp,):
        _, _, meta = encode_pass(source, labeller, tmp, Path(outdir))
    log.info("encoded %s patches into %s", meta["splits"], outdir)
    return meta


def encode_pass(
    source: Source, labeller: Labeller, tmp: Path, outdir: Path, selection: Selection = EVERYTHING
) -> tuple[pd.DataFrame, dict, dict]:
    """One pass over ``source``'s archive: label table, summary and ``meta.json`` of the arrays written to ``tmp``.

    Band rows are allocated for every candidate of ``labeller`` and filled as the patches stream by; the rows
    of candidates the table does not keep (no BigEarthNet-19 label, absent from the archive where
    ``selection`` allows that, not drawn into its subset) are compacted away at the end; rows never written take
    no disk (the files are sparse until then). Where the labels are known before the pass and no patch may be
    missing, the subset is drawn first and only its patches are decoded. Reference maps, from their own archive,
    follow in a stream of that archive.
    """
    known = labeller.known()
    early = selection.draws_before_the_pass(known is not None)
    candidates = labeller.candidates()
    if early:
        drawn = selection.subset.draw(known)
        names = set(drawn["patch"])
        candidates = {split: [name for name in listed if name in names] for split, listed in candidates.items()}
    slot = {name: (split, row) for split, names in candidates.items() for row, name in enumerate(names)}
    with_maps = source.reference_maps is not None
    try:
        require_free_space(outdir, encoded_bytes(len(slot), with_maps), "the encoded arrays")
    except DiskSpaceError:  # an archive with few of the listed patches needs room for those only
        capacity = patch_capacity(source.archive)
        if capacity >= len(slot):
            raise
        require_free_space(outdir, encoded_bytes(capacity, with_maps), "the encoded arrays")
    tmp.mkdir()
    bands = _allocate(tmp, {split: len(names) for split, names in candidates.items()}, BAND_PARTS)
    late = selection.subset.draws and not early  # drawn after the pass: training rows may still drop
    statistics = None if late else BandAccumulator()
    filled, seen, streamed = _fill(source, labeller, slot, bands, statistics)
    del bands  # rows went in with pwrite; compaction below may cut the files under the mappings
    table, summary = labeller.finish()
    summary = dict(summary)
    absent = settle_absent(source.archive, absent_by_split(candidates, seen), selection.allow_missing,
                           "they are dropped and counted")  # fmt: skip
    if selection.allow_missing:
        table = table[table["patch"].isin(filled)].reset_index(drop=True)
        summary["patches_in_archive"] = streamed  # (a partial copy: not what the lists or the metadata name)
        summary["listed_but_absent"] = absent
        require_every_split(source.archive, {split: len(names) for split, names in candidates.items()},
                            _sizes(table))  # fmt: skip
    if selection.subset.draws:
        population = known if early else table
        table = drawn if early else selection.subset.draw(population)
        summary["subset"] = selection.subset.describe(population, table)
    _check_all_filled(source.archive, table["patch"], filled)
    sizes = _sizes(table)
    summary["kept"] = sizes
    rows = {split: table.loc[table["split"] == split, "patch"].tolist() for split in SPLITS}
    for split, names in candidates.items():
        if len(rows[split]) < len(names):
            kept = set(rows[split])
            keep = np.fromiter((name in kept for name in names), bool, len(names))
            if [name for name, kept_row in zip(names, keep, strict=True) if kept_row] != rows[split]:
                raise RuntimeError(f"the {split} rows were reserved in another order than the label table's")
            for part in BAND_PARTS:
                compact_rows(tmp / encoded_array(split, part), keep)
    labels = _allocate(tmp, sizes, ("labels",))
    for split in SPLITS:
        (tmp / patch_list(split)).write_text("".join(f"{name}\n" for name in rows[split]))
        for row, names in enumerate(table.loc[table["split"] == split, "labels"]):
            labels[split]["labels"][row] = multi_hot(names)
        labels[split]["labels"].flush()
    del labels
    if statistics is None:  # the subset was drawn after the pass: the training rows kept, read back
        statistics = split_statistics(tmp, "train")
    if with_maps:
        maps = _allocate(tmp, sizes, (REFERENCE_MAPS,))  # every row is filled, or marked as having no map
        kept_slot = {name: (split, row) for split, names in rows.items() for row, name in enumerate(names)}
        mapped = _fill_maps(source.reference_maps, kept_slot, maps)
        unmapped = absent_by_split(rows, mapped)
        counts = settle_absent(source.reference_maps, unmapped, selection.allow_missing,
                               'their maps read "no class" everywhere')  # fmt: skip
        if selection.allow_missing:
            _mark_unmapped(maps, {split: [kept_slot[name][1] for name in names] for split, names in unmapped.items()})
            summary["reference_maps_absent"] = counts
    statistics.write_csv(tmp / ENCODED_FILES["training_band_statistics"])
    if source.band_statistics is None:
        statistics.band_statistics().write_csv(tmp / ENCODED_FILES["band_statistics"])
    else:
        shutil.copyfile(source.band_statistics, tmp / ENCODED_FILES["band_statistics"])
    meta = {
        "dataset": source.dataset,
        "version": source.version,
        "description": source.describe(),
        "source": str(source.archive),
        "reference_maps": str(source.reference_maps) if with_maps else None,
        "normalisation": "training split" if source.band_statistics is None else str(source.band_statistics),
        "dtype": np.dtype(DTYPE).name,
        "groups": {g.name: {"bands": list(g.bands), "size": g.size} for g in BAND_GROUPS},
        "classes": list(classes()),
        "splits": sizes,
    }
    (tmp / ENCODED_FILES["meta"]).write_text(json.dumps(meta, indent=2) + "\n")
    return table, summary, meta


def _sizes(table: pd.DataFrame) -> dict[str, int]:
    return {split: int((table["split"] == split).sum()) for split in SPLITS}


def _mark_unmapped(arrays: dict[str, dict[str, np.memmap]], rows: dict[str, list[int]]) -> None:
    """Write "no class" (255) over the maps of ``rows`` (per split), the patches whose map is absent."""
    empty = np.full((MAP_SIZE, MAP_SIZE), NO_CLASS, np.uint8)
    for split, indices in rows.items():
        if indices:
            writer = _RowWriter(arrays[split][REFERENCE_MAPS])
            try:
                for row in indices:
                    writer.write(row, empty)
            finally:
                writer.close()


def _shape(part: str, rows: int) -> tuple[np.dtype, tuple[int, ...]]:
    """dtype and shape of one encoded array of ``rows`` rows (``part`` as in ``array_name``)."""
    if part == "labels":
        return np.dtype(np.uint8), (rows, len(classes()))
    if part == REFERENCE_MAPS:
        return np.dtype(np.uint8), (rows, MAP_SIZE, MAP_SIZE)
    group = next(g for g in BAND_GROUPS if g.name == part)
    return np.dtype(DTYPE), (rows, len(group.bands), group.size, group.size)


def _allocate(folder: Path, sizes: dict[str, int], parts: tuple[str, ...]) -> dict[str, dict[str, np.memmap]]:
    """Create each split's ``.npy`` files of ``parts`` at their final size, ready to be filled."""
    arrays: dict[str, dict[str, np.memmap]] = {}
    for split, n in sizes.items():
        arrays[split] = {}
        for part in parts:
            dtype, shape = _shape(part, n)
            path = folder / encoded_array(split, part)
            arrays[split][part] = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    return arrays


def compact_rows(path: Path, keep: np.ndarray) -> None:
    """Drop the rows of the ``.npy`` file at ``path`` where ``keep`` is False, in place.

    Kept rows move up in order (block by block), the file is cut to the kept rows and its header rewritten:
    the result equals an array written with only the kept rows. NumPy pads headers so the row count can
    grow to 21 digits, so the new header has the old one's length.
    """
    array = np.load(path, mmap_mode="r")
    if len(keep) != len(array):
        raise InputError(f"{path}: {len(array)} rows, but {len(keep)} keep flags")
    offset, row_bytes, shape, dtype = array.offset, array[0:1].nbytes if len(array) else 0, array.shape, array.dtype
    del array
    kept = np.flatnonzero(keep)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (len(kept), *shape[1:])}
    )
    if len(header.getvalue()) != offset:
        raise InputError(f"{path}: a header of {offset} bytes cannot be rewritten in place")
    with open(path, "r+b") as handle:
        fd = handle.fileno()
        breaks = np.flatnonzero(np.diff(kept) != 1) + 1  # runs of consecutive kept rows
        for run in np.split(kept, breaks) if len(kept) else []:
            target = int(np.searchsorted(kept, run[0]))
            if target != run[0]:
                _move(fd, offset + int(run[0]) * row_bytes, offset + target * row_bytes, len(run) * row_bytes)
        os.ftruncate(fd, offset + len(kept) * row_bytes)
        os.pwrite(fd, header.getvalue(), 0)


def _move(fd: int, source: int, target: int, size: int) -> None:
    """Copy ``size`` bytes from ``source`` to an earlier ``target`` of one file, front to back."""
    for start in range(0, size, MOVE_CHUNK):
        data = os.pread(fd, min(MOVE_CHUNK, size - start), source + start)
        if os.pwrite(fd, data, target + start) != len(data):
            raise OSError(f"moving rows: wrote fewer than {len(data)} bytes (disk full?)")


class _RowWriter:
    """Writes the rows of one memory-mapped ``.npy`` file with ``pwrite`` rather than through its mapping.

    Pages written through a mapping count as the process's resident memory until they are written back
    (1.6 GB after 10,000 patches, up to 83 GB for BigEarthNet); written with ``pwrite`` they sit in the page
    cache only, so the encoder's memory stays flat however large the archive.
    """

    def __init__(self, array: np.memmap) -> None:
        self.path = Path(array.filename)
        self.dtype = array.dtype
        self.offset = array.offset
        self.row_bytes = array.itemsize * int(np.prod(array.shape[1:]))
        self.file = open(self.path, "r+b")  # noqa: SIM115 (closed by close())

    def write(self, row: int, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, dtype=self.dtype)
        assert data.nbytes == self.row_bytes, (data.shape, self.row_bytes)
        written = os.pwrite(self.file.fileno(), data, self.offset + row * self.row_bytes)
        if written != data.nbytes:
            raise OSError(f"{self.path}: wrote {written} of {data.nbytes} bytes of row {row} (disk full?)")

    def close(self) -> None:
        self.file.close()


def _fill(
    source: Source,
    labeller: Labeller,
    slot: dict[str, tuple[str, int]],
    arrays: dict[str, dict[str, np.memmap]],
    statistics: BandAccumulator | None,
) -> tuple[set[str], set[str], int]:
    """Stream the archive past ``labeller``; decode each kept patch into its row and count the training ones (unless
    ``statistics`` is None). Returns the patches written, the candidates (keys of ``slot``) the archive held and
    how many patches it held."""
    filled: set[str] = set()
    seen: set[str] = set()
    streamed = 0
    with ExitStack() as stack, tqdm(total=len(slot), desc="encode", unit=" patches", mininterval=2) as progress:
        writers = {
            split: {g.name: _RowWriter(split_arrays[g.name]) for g in BAND_GROUPS}
            for split, split_arrays in arrays.items()
        }
        for writer in (w for split_writers in writers.values() for w in split_writers.values()):
            stack.callback(writer.close)
        pixels = np.empty(PATCH_PIXELS, DTYPE)  # one patch, its bands back to back in encoded order, reused
        band_views = {b: pixels[BAND_STARTS[b] :][: BAND_PIXELS[b]].reshape(BAND_SIZE[b], -1) for b in BANDS}
        group_views = {  # a group's bands are consecutive in the encoded order: its row is one slice
            g.name: pixels[BAND_STARTS[g.bands[0]] :][: sum(BAND_PIXELS[b] for b in g.bands)] for g in BAND_GROUPS
        }
        for patch in source.iter_patches(wanted=set(slot)):
            kept = labeller.add(patch)  # every patch goes past the labeller: v1.0's labels come from the stream
            streamed += 1
            if patch.name in slot:
                seen.add(patch.name)
            if not kept or patch.name not in slot:  # (a patch left out of a subset drawn before the pass)
                continue
            split, row = slot[patch.name]
            for band in BANDS:
                band_views[band][...] = decode_band(patch.bands[band], patch.name, band)
            for group in BAND_GROUPS:
                writers[split][group.name].write(row, group_views[group.name])
            if split == "train" and statistics is not None:
                statistics.add(pixels)
            filled.add(patch.name)
            progress.update()
    return filled, seen, streamed


def _fill_maps(path: Path, slot: dict[str, tuple[str, int]], arrays: dict[str, dict[str, np.memmap]]) -> set[str]:
    """Write each wanted patch's class-index reference map into its row."""
    filled: set[str] = set()
    with ExitStack() as stack, tqdm(total=len(slot), desc="reference maps", unit=" maps", mininterval=2) as progress:
        writers = {split: _RowWriter(split_arrays[REFERENCE_MAPS]) for split, split_arrays in arrays.items()}
        for writer in writers.values():
            stack.callback(writer.close)
        for name, class_map in iter_reference_maps(path, wanted=set(slot)):
            split, row = slot[name]
            writers[split].write(row, class_map)
            filled.add(name)
            progress.update()
    return filled


def _check_all_filled(archive: Path, wanted: Iterable[str], filled: set[str]) -> None:
    missing = sorted(set(wanted) - filled)
    if missing:
        raise InputError(f"{archive}: {len(missing)} labelled patch(es) not found in the archive, e.g. {missing[0]}")


def write_random_encoded(outdir: Path, sizes: dict[str, int], seed: int = 0) -> Path:
    """An encoded folder of random patches and its ``class_counts.csv``, without an archive or the label stage.

    Bands are uniform within two standard deviations of the official band means, about one label in five is on:
    enough for speed checks and the GPU tests, on machines that lack the data stack (rasterio, pyarrow).
    """
    rng = np.random.default_rng(seed)
    statistics = official_band_statistics()
    outdir = Path(outdir)
    outdir.mkdir(parents=True)
    arrays = _allocate(outdir, sizes, (*BAND_PARTS, "labels"))
    counts = pd.DataFrame(0, index=pd.Index(classes(), name="class"), columns=list(sizes), dtype=int)
    for split, parts in arrays.items():
        for group in BAND_GROUPS:
            mean, std = (a.reshape(1, -1, 1, 1) for a in statistics.group_arrays(group))
            low, high = np.maximum(mean - 2 * std, 0), mean + 2 * std
            for start in range(0, sizes[split], 1024):  # in chunks: memory stays bounded
                block = parts[group.name][start : start + 1024]
                block[:] = (low + (high - low) * rng.random(block.shape, dtype=np.float32)).astype(DTYPE)
        parts["labels"][:] = rng.random(parts["labels"].shape) < 0.2
        counts[split] = parts["labels"].sum(axis=0)
        for array in parts.values():
            array.flush()
        (outdir / patch_list(split)).write_text("".join(f"random_{split}_{i}\n" for i in range(sizes[split])))
    statistics.write_csv(outdir / ENCODED_FILES["band_statistics"])
    counts.to_csv(outdir / LABEL_FILES["counts"])
    return outdir
