"""The ``Source`` interface, what its implementations share, and how a command line picks one."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from benloss.data.archive import MAP_PATCH_FILES, REFERENCE_MAP, ArchiveError, RawPatch, decode_band, iter_patches
from benloss.errors import InputError
from benloss.facts.nomenclature import reference_map_classes
from benloss.facts.splits import SPLITS

#: The dataset names a source may carry (``meta.json`` of the encoded folder states one).
DATASETS: tuple[str, ...] = ("demo", "bigearthnet-v1", "bigearthnet-v2")
TABLE_COLUMNS = ["patch", "split", "labels", "original_labels"]


class Source(Protocol):
    """One dataset's files and how to read them."""

    dataset: str
    version: str

    @property
    def archive(self) -> Path:
        """The Sentinel-2 archive (a tar file or an extracted folder)."""

    @property
    def reference_maps(self) -> Path | None:
        """The reference-map archive, or None where the source has none."""

    @property
    def band_statistics(self) -> Path | None:
        """The ``band,mean,std`` file that normalises, or None for the training split's own statistics."""

    def describe(self) -> str:
        """A line for tables, figures and the report."""

    def listed(self) -> int:
        """How many patches the label files list (before reading the archive: bounds the label table's size)."""

    def label_table(self) -> tuple[pd.DataFrame, dict]:
        """The kept patches (``TABLE_COLUMNS``) and a summary of what was dropped."""

    def labeller(self) -> Labeller:
        """What labels the patches as they stream by, so one pass over the archive also yields the label table."""

    def iter_patches(self, wanted: set[str]) -> Iterator[RawPatch]:
        """Every patch of the archive, with the band bytes of the ``wanted`` ones."""


class Labeller(Protocol):
    """Builds the label table from the patches of one pass over the archive, as they stream by."""

    def candidates(self) -> dict[str, list[str]]:
        """Per split, in the label table's order, every patch the table may keep (known before the pass)."""

    def known(self) -> pd.DataFrame | None:
        """The label table where it is known before the pass (a subset can then be drawn first), else None."""

    def add(self, patch: RawPatch) -> bool:
        """Take the next patch of the stream; True if the label table keeps it."""

    def finish(self) -> tuple[pd.DataFrame, dict]:
        """The label table and its summary, once every patch has gone by."""


class KnownLabels:
    """A label table known before the pass (v2.0's metadata file, or an earlier label stage's table)."""

    def __init__(self, table: pd.DataFrame, summary: dict) -> None:
        self.table = table
        self.summary = summary
        self.kept = set(table["patch"])

    def candidates(self) -> dict[str, list[str]]:
        return {split: self.table.loc[self.table["split"] == split, "patch"].tolist() for split in SPLITS}

    def known(self) -> pd.DataFrame:
        return self.table

    def add(self, patch: RawPatch) -> bool:
        return patch.name in self.kept

    def finish(self) -> tuple[pd.DataFrame, dict]:
        return self.table, self.summary


def finish_table(rows: list[tuple[str, str, list[str], list[str]]]) -> pd.DataFrame:
    """The label table (rows in ``TABLE_COLUMNS`` order) by split (train, val, test), then patch name."""
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table["split"] = pd.Categorical(table["split"], categories=list(SPLITS))
    return table.sort_values(["split", "patch"], kind="stable").reset_index(drop=True)


def iter_reference_maps(path: Path, wanted: set[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(patch, uint8 class-index map) for each wanted patch of a reference-map archive or folder."""
    for patch in iter_patches(path, read_bands=True, wanted=wanted, expected=MAP_PATCH_FILES):
        if patch.name in wanted:
            codes = decode_band(patch.bands[REFERENCE_MAP], patch.name, REFERENCE_MAP)
            yield patch.name, reference_map_classes(codes, source=f"{path}: {patch.name}_{REFERENCE_MAP}.tif")


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_md5(path: Path, expected: str, what: str) -> None:
    """Stop with an error naming ``path`` unless its md5 is ``expected``."""
    actual = md5_of(path)
    if actual != expected:
        raise ArchiveError(f"{path}: md5 {actual}, but the official {what} has md5 {expected}; replace the file")


def open_source(
    dataset: str,
    layout: str,
    archive: Path,
    *,
    reference_maps: Path | None = None,
    metadata: Path | None = None,
    exclusions: Path | None = None,
    lists: Mapping[str, Path] | None = None,
    band_statistics: Path | None = None,
) -> Source:
    """The source of ``dataset`` in ``layout`` (``v1`` or ``v2``), checking that its label files are named.

    ``reference_maps`` is optional: the label stage does not read them, and without them none are encoded.
    """
    from benloss.data.sources.bigearthnet_v1 import BigEarthNetV1
    from benloss.data.sources.bigearthnet_v2 import BigEarthNetV2

    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if dataset != "demo":
        layout = dataset.removeprefix("bigearthnet-")
    if layout == "v1":
        _require(dataset, lists=lists, band_statistics=band_statistics)
        return BigEarthNetV1(Path(archive), dict(lists), Path(band_statistics), _path(reference_maps), dataset)
    if layout == "v2":
        _require(dataset, metadata=metadata, exclusions=exclusions)
        return BigEarthNetV2(Path(archive), _path(reference_maps), Path(metadata), Path(exclusions), dataset)
    raise InputError(f"unknown layout {layout!r}; expected v1 or v2")


def _require(dataset: str, **paths: object) -> None:
    options = {"lists": "train, --val, --test, --snow, --cloud"}
    missing = [options.get(name, name.replace("_", "-")) for name, value in paths.items() if value is None]
    if missing:
        raise InputError(f"the {dataset} source needs --{', --'.join(missing)}")


def _path(value: Path | None) -> Path | None:
    return None if value is None else Path(value)
