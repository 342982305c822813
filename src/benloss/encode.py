"""The encode stage: one streaming pass from the archive into per-split, memory-mappable uint16 arrays.

Layout of the output folder (described again in its ``meta.json``)::

    <split>_10m.npy                (N, 4, 120, 120) uint16   B02 B03 B04 B08
    <split>_20m.npy                (N, 6, 60, 60)   uint16   B05 B06 B07 B8A B11 B12
    <split>_60m.npy                (N, 2, 20, 20)   uint16   B01 B09
    <split>_labels.npy             (N, 19)          uint8    multi-hot, official class order
    <split>_reference_maps.npy     (N, 120, 120)    uint8    class index per pixel, 255 = no class
                                                             (only for sources with reference maps)
    <split>_patches.txt            N patch names, row order of the arrays
    training_band_statistics.csv   band, mean, std, min, max of the training split (exact)
    band_statistics.csv            the per-band mean/std the trainer normalises with: the source's
                                   file (v1.0, demo in v1.0 layout) or the training split's (v2.0)

Rows follow ``patches.parquet``; arrays are preallocated on disk and filled as patches stream by, so
peak memory does not grow with the archive. Reference maps stream in a second pass over their archive.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from benloss.archive import MAP_SIZE, decode_patch
from benloss.atomic import atomic_outputs
from benloss.bands import BAND_GROUPS, DTYPE, official_band_statistics
from benloss.datasets import Source
from benloss.datasets.base import iter_reference_maps
from benloss.datasets.bigearthnet_v1 import BigEarthNetV1
from benloss.diskspace import require_free_space
from benloss.labels import read_label_table
from benloss.nomenclature import classes, multi_hot
from benloss.splits import SPLITS
from benloss.training_statistics import FILE_NAME as TRAINING_STATISTICS
from benloss.training_statistics import BandAccumulator

log = logging.getLogger(__name__)
REFERENCE_MAPS = "reference_maps"


def array_name(split: str, part: str) -> str:
    """File name of one encoded array, ``part`` a band group name, ``labels`` or ``reference_maps``."""
    return f"{split}_{part}.npy"


def encoded_bytes(patches: int, with_maps: bool = False) -> int:
    """Disk bytes of the encoded arrays of ``patches`` patches: their bands, label vectors and reference maps."""
    pixels = sum(len(group.bands) * group.size**2 for group in BAND_GROUPS)
    return patches * (pixels * np.dtype(DTYPE).itemsize + len(classes()) + (MAP_SIZE**2 if with_maps else 0))


def encode_archive(archive: Path, label_table: Path, band_statistics: Path, outdir: Path) -> dict:
    """Encode a v1.0 archive normalised by ``band_statistics`` (the shortcut of ``encode`` for v1.0)."""
    return encode(BigEarthNetV1(Path(archive), {}, Path(band_statistics)), label_table, outdir)


def encode(source: Source, label_table: Path, outdir: Path) -> dict:
    """Encode the kept patches of ``label_table`` from ``source`` into ``outdir`` (written atomically)."""
    table = read_label_table(label_table)
    slot = {
        name: (split, row) for split in SPLITS for row, name in enumerate(table.loc[table["split"] == split, "patch"])
    }
    sizes = {split: int((table["split"] == split).sum()) for split in SPLITS}
    with_maps = source.reference_maps is not None
    require_free_space(Path(outdir), encoded_bytes(sum(sizes.values()), with_maps), "the encoded arrays")
    with atomic_outputs(Path(outdir)) as (tmp,):
        tmp.mkdir()
        arrays = _allocate(tmp, sizes, with_maps)
        for split in SPLITS:
            rows = table[table["split"] == split]
            (tmp / f"{split}_patches.txt").write_text("".join(f"{name}\n" for name in rows["patch"]))
            for row, labels in enumerate(rows["labels"]):
                arrays[split]["labels"][row] = multi_hot(labels)
        statistics = BandAccumulator()
        _check_all_filled(source.archive, slot, _fill(source, slot, arrays, statistics))
        if with_maps:
            _check_all_filled(source.reference_maps, slot, _fill_maps(source.reference_maps, slot, arrays))
        for split_arrays in arrays.values():
            split_arrays["labels"].flush()  # band rows and maps went in with pwrite, not through their mappings
        statistics.write_csv(tmp / TRAINING_STATISTICS)
        if source.band_statistics is None:
            statistics.band_statistics().write_csv(tmp / "band_statistics.csv")
        else:
            shutil.copyfile(source.band_statistics, tmp / "band_statistics.csv")
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
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("encoded %s patches into %s", sizes, outdir)
    return meta


def _allocate(folder: Path, sizes: dict[str, int], with_maps: bool = False) -> dict[str, dict[str, np.memmap]]:
    arrays: dict[str, dict[str, np.memmap]] = {}
    for split, n in sizes.items():
        arrays[split] = {
            g.name: np.lib.format.open_memmap(
                folder / array_name(split, g.name), mode="w+", dtype=DTYPE, shape=(n, len(g.bands), g.size, g.size)
            )
            for g in BAND_GROUPS
        }
        arrays[split]["labels"] = np.lib.format.open_memmap(
            folder / array_name(split, "labels"), mode="w+", dtype=np.uint8, shape=(n, len(classes()))
        )
        if with_maps:
            maps = np.lib.format.open_memmap(
                folder / array_name(split, REFERENCE_MAPS), mode="w+", dtype=np.uint8, shape=(n, 120, 120)
            )
            arrays[split][REFERENCE_MAPS] = maps  # every row is filled, or the stage fails
    return arrays


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
    slot: dict[str, tuple[str, int]],
    arrays: dict[str, dict[str, np.memmap]],
    statistics: BandAccumulator,
) -> set[str]:
    """Decode the wanted patches as they stream by, write each into its row and count the training ones."""
    filled: set[str] = set()
    with ExitStack() as stack, tqdm(total=len(slot), desc="encode", unit=" patches", mininterval=2) as progress:
        writers = {
            split: {g.name: _RowWriter(split_arrays[g.name]) for g in BAND_GROUPS}
            for split, split_arrays in arrays.items()
        }
        for writer in (w for split_writers in writers.values() for w in split_writers.values()):
            stack.callback(writer.close)
        for patch in source.iter_patches(wanted=set(slot)):
            if patch.name not in slot:
                continue
            split, row = slot[patch.name]
            bands = decode_patch(patch)
            for group in BAND_GROUPS:
                writers[split][group.name].write(row, np.stack([bands[b] for b in group.bands]))
            if split == "train":
                statistics.add(bands)
            filled.add(patch.name)
            progress.update()
    return filled


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


def _check_all_filled(archive: Path, slot: dict[str, tuple[str, int]], filled: set[str]) -> None:
    missing = sorted(set(slot) - filled)
    if missing:
        raise ValueError(f"{archive}: {len(missing)} labelled patch(es) not found in the archive, e.g. {missing[0]}")


def open_encoded(folder: Path, split: str, mode: str = "r") -> dict[str, np.ndarray]:
    """Memory-map one split's arrays: the three band groups and ``labels``."""
    folder = Path(folder)
    parts = [g.name for g in BAND_GROUPS] + ["labels"]
    return {part: np.load(folder / array_name(split, part), mmap_mode=mode) for part in parts}


def read_reference_maps(folder: Path, split: str) -> np.ndarray | None:
    """One split's (N, 120, 120) class-index reference maps, or None where the source has none."""
    path = Path(folder) / array_name(split, REFERENCE_MAPS)
    return np.load(path, mmap_mode="r") if path.exists() else None


def read_patch_names(folder: Path, split: str) -> list[str]:
    """Patch names of one split, in the row order of its arrays."""
    return (Path(folder) / f"{split}_patches.txt").read_text().split()


def write_random_encoded(outdir: Path, sizes: dict[str, int], seed: int = 0) -> Path:
    """An encoded folder of random patches and its ``class_counts.csv``, without an archive or the label stage.

    Bands are uniform within two standard deviations of the official band means, about one label in five is on:
    enough for speed checks and the GPU tests, on machines that lack the data stack (rasterio, pyarrow).
    """
    rng = np.random.default_rng(seed)
    statistics = official_band_statistics()
    outdir = Path(outdir)
    outdir.mkdir(parents=True)
    arrays = _allocate(outdir, sizes)
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
        (outdir / f"{split}_patches.txt").write_text("".join(f"random_{split}_{i}\n" for i in range(sizes[split])))
    statistics.write_csv(outdir / "band_statistics.csv")
    counts.to_csv(outdir / "class_counts.csv")
    return outdir
