"""The encode stage: one streaming pass from the archive into per-split, memory-mappable uint16 arrays.

Layout of the output folder (described again in its ``meta.json``)::

    <split>_10m.npy     (N, 4, 120, 120) uint16   B02 B03 B04 B08
    <split>_20m.npy     (N, 6, 60, 60)   uint16   B05 B06 B07 B8A B11 B12
    <split>_60m.npy     (N, 2, 20, 20)   uint16   B01 B09
    <split>_labels.npy  (N, 19)          uint8    multi-hot, official class order
    <split>_patches.txt N patch names, row order of the arrays
    band_statistics.csv the per-band mean/std the trainer normalises with

Rows follow ``patches.parquet``; arrays are preallocated on disk and filled as patches stream by, so
peak memory does not grow with the archive.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from benloss.archive import decode_patch, iter_patches
from benloss.atomic import atomic_outputs
from benloss.bands import BAND_GROUPS, DTYPE, official_band_statistics
from benloss.labels import read_label_table
from benloss.nomenclature import classes, multi_hot
from benloss.splits import SPLITS

log = logging.getLogger(__name__)


def array_name(split: str, part: str) -> str:
    """File name of one encoded array, ``part`` a band group name or ``labels``."""
    return f"{split}_{part}.npy"


def encode_archive(archive: Path, label_table: Path, band_statistics: Path, outdir: Path) -> dict:
    """Encode the kept patches of ``label_table`` from ``archive`` into ``outdir`` (written atomically)."""
    table = read_label_table(label_table)
    slot = {
        name: (split, row) for split in SPLITS for row, name in enumerate(table.loc[table["split"] == split, "patch"])
    }
    sizes = {split: int((table["split"] == split).sum()) for split in SPLITS}
    with atomic_outputs(Path(outdir)) as (tmp,):
        tmp.mkdir()
        arrays = _allocate(tmp, sizes)
        for split in SPLITS:
            rows = table[table["split"] == split]
            (tmp / f"{split}_patches.txt").write_text("".join(f"{name}\n" for name in rows["patch"]))
            for row, labels in enumerate(rows["labels"]):
                arrays[split]["labels"][row] = multi_hot(labels)
        filled = _fill(archive, slot, arrays)
        missing = sorted(set(slot) - filled)
        if missing:
            raise ValueError(
                f"{archive}: {len(missing)} labelled patch(es) not found in the archive, e.g. {missing[0]}"
            )
        for split_arrays in arrays.values():
            for array in split_arrays.values():
                array.flush()
        shutil.copyfile(band_statistics, tmp / "band_statistics.csv")
        meta = {
            "source": str(archive),
            "dtype": np.dtype(DTYPE).name,
            "groups": {g.name: {"bands": list(g.bands), "size": g.size} for g in BAND_GROUPS},
            "classes": list(classes()),
            "splits": sizes,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("encoded %s patches into %s", sizes, outdir)
    return meta


def _allocate(folder: Path, sizes: dict[str, int]) -> dict[str, dict[str, np.memmap]]:
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
    return arrays


def _fill(archive: Path, slot: dict[str, tuple[str, int]], arrays: dict[str, dict[str, np.memmap]]) -> set[str]:
    """Decode the wanted patches as they stream by and write each into its row."""
    filled: set[str] = set()
    with tqdm(total=len(slot), desc="encode", unit=" patches", mininterval=2) as progress:
        for patch in iter_patches(archive, read_bands=True, wanted=set(slot)):
            if patch.name not in slot:
                continue
            split, row = slot[patch.name]
            bands = decode_patch(patch)
            for group in BAND_GROUPS:
                arrays[split][group.name][row] = np.stack([bands[b] for b in group.bands])
            filled.add(patch.name)
            progress.update()
    return filled


def open_encoded(folder: Path, split: str, mode: str = "r") -> dict[str, np.ndarray]:
    """Memory-map one split's arrays: the three band groups and ``labels``."""
    folder = Path(folder)
    parts = [g.name for g in BAND_GROUPS] + ["labels"]
    return {part: np.load(folder / array_name(split, part), mmap_mode=mode) for part in parts}


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
