"""BigEarthNet-S2 v2.0 (reBEN, and the demo in its layout): labels and splits in ``metadata.parquet``.

Layout: ``BigEarthNet-S2/<tile>/<patch>/<patch>_<band>.tif`` (no label file) and
``Reference_Maps/<tile>/<patch>/<patch>_reference_map.tif`` (CORINE 2018 codes per 10 m pixel).
``metadata.parquet`` names the 19 classes of each kept patch and its split (``validation`` for val);
``metadata_for_patches_with_snow_cloud_or_shadow.parquet`` lists the excluded patches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd

from benloss.data.archive import V2_PATCH_FILES, ArchiveError, RawPatch, iter_patches
from benloss.data.sources.base import KnownLabels, check_md5, finish_table
from benloss.facts.nomenclature import classes
from benloss.facts.resources import resource
from benloss.facts.splits import SPLITS
from benloss.layout import V2_FILES

#: The official names of the two parquet files.
METADATA = V2_FILES["metadata"]
EXCLUSIONS = V2_FILES["exclusions"]
#: metadata.parquet's split names -> benloss's.
SPLIT_NAMES = {"train": "train", "validation": "val", "test": "test"}
REQUIRED_COLUMNS = ("patch_id", "labels", "split")


@cache
def official_md5() -> dict[str, str]:
    """md5 of the official parquet files, as ``resources/bigearthnet_v2/MD5SUMS`` records them."""
    lines = resource("bigearthnet_v2", "MD5SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


@dataclass(frozen=True)
class BigEarthNetV2:
    """A v2.0 Sentinel-2 archive, its reference maps and its two metadata files."""

    archive: Path
    reference_maps: Path | None
    metadata: Path
    exclusions: Path
    dataset: str = "bigearthnet-v2"
    version: str = "2.0"
    #: None: normalise with the training split's own statistics (v1.0's do not hold for v2.0's processing).
    band_statistics: None = None

    def describe(self) -> str:
        if self.dataset == "demo":
            return "synthetic demo archive in BigEarthNet-S2 v2.0 layout"
        return "BigEarthNet-S2 v2.0 (reBEN), BigEarthNet-19 classes"

    def iter_patches(self, wanted: set[str]) -> Iterator[RawPatch]:
        return iter_patches(self.archive, read_bands=True, wanted=wanted, expected=V2_PATCH_FILES)

    def listed(self) -> int:
        import pyarrow.parquet

        return pyarrow.parquet.ParquetFile(self.metadata).metadata.num_rows

    def labeller(self) -> KnownLabels:
        """The metadata file's table: the Sentinel-2 archive's patches only find their rows in it."""
        return KnownLabels(*self.label_table())

    def label_table(self) -> tuple[pd.DataFrame, dict]:
        """Kept patches from the metadata file, dropped ones from the exclusion file; the archive is not read."""
        if self.dataset == "bigearthnet-v2":
            check_md5(self.metadata, official_md5()[METADATA], METADATA)
            check_md5(self.exclusions, official_md5()[EXCLUSIONS], EXCLUSIONS)
        kept = read_metadata(self.metadata)
        excluded = read_metadata(self.exclusions)
        snow = excluded.get("contains_seasonal_snow", pd.Series(False, index=excluded.index)).astype(bool)
        dropped = set(excluded["patch_id"])
        rows = [
            (name, split, labels, labels)
            for name, split, labels in zip(kept["patch_id"], kept["split"], kept["labels"], strict=True)
            if name not in dropped
        ]
        table = finish_table(rows)
        summary = {
            "archive": str(self.archive),
            "metadata": str(self.metadata),
            "patches_in_archive": len(set(kept["patch_id"]) | dropped),
            "kept": {split: int((table["split"] == split).sum()) for split in SPLITS},
            "dropped": {
                "snow": int(snow.sum()),
                "cloud": int((~snow).sum()),
                "no_19_class_label": 0,
                "not_in_split_lists": 0,
            },
            "listed_but_absent": dict.fromkeys(SPLITS, 0),
        }
        return table, summary


def read_metadata(path: Path) -> pd.DataFrame:
    """A v2.0 metadata file with ``split`` in benloss's names and ``labels`` as lists, checked for form."""
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise ArchiveError(f"{path}: not a readable parquet file ({error})") from None
    absent = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if absent:
        raise ArchiveError(f"{path}: lacks column(s) {', '.join(absent)}")
    duplicated = table["patch_id"][table["patch_id"].duplicated()]
    if len(duplicated):
        raise ArchiveError(f"{path}: patch {duplicated.iloc[0]} appears twice")
    odd_split = sorted(set(table["split"]) - set(SPLIT_NAMES))
    if odd_split:
        raise ArchiveError(f"{path}: unknown split(s) {odd_split}; expected {', '.join(SPLIT_NAMES)}")
    table["split"] = table["split"].map(SPLIT_NAMES)
    order = {name: i for i, name in enumerate(classes())}
    pairs = zip(table["patch_id"], table["labels"], strict=True)
    table["labels"] = [_checked_labels(path, name, labels, order) for name, labels in pairs]
    return table


def _checked_labels(path: Path, patch: str, labels, order: dict[str, int]) -> list[str]:
    names = list(labels)
    unknown = [name for name in names if name not in order]
    if unknown:
        raise ArchiveError(f"{path}: patch {patch} has unknown BigEarthNet-19 label(s) {unknown}")
    return sorted(set(names), key=order.__getitem__)
