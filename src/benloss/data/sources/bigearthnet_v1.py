"""BigEarthNet-S2 v1.0 (and the demo in its layout): labels in a JSON per patch, splits in five name lists.

Layout: ``<root>/<patch>/<patch>_<band>.tif`` and ``<patch>_labels_metadata.json`` with the 43 CORINE names.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from benloss.data.archive import V1_PATCH_FILES, RawPatch, iter_patches
from benloss.data.sources.base import finish_table
from benloss.errors import InputError
from benloss.facts.nomenclature import to_bigearthnet19
from benloss.facts.splits import SPLITS, excluded_patches, split_of_patches

log = logging.getLogger(__name__)

DROP_REASONS = ("snow", "cloud", "no_19_class_label", "not_in_split_lists")


@dataclass(frozen=True)
class BigEarthNetV1:
    """A v1.0 archive, its split and exclusion lists and the statistics that normalise it."""

    archive: Path
    lists: Mapping[str, Path]
    #: The ``band,mean,std`` file that normalises; None: the training split's own statistics.
    band_statistics: Path | None
    reference_maps: Path | None = None
    dataset: str = "bigearthnet-v1"
    version: str = "1.0"

    def describe(self) -> str:
        if self.dataset == "demo":
            return "synthetic demo archive in BigEarthNet-S2 v1.0 layout"
        return "BigEarthNet-S2 v1.0, BigEarthNet-19 classes"

    def iter_patches(self, wanted: set[str]) -> Iterator[RawPatch]:
        return iter_patches(self.archive, read_bands=True, wanted=wanted, expected=V1_PATCH_FILES)

    def listed(self) -> int:
        return len(split_of_patches(self.lists))

    def labeller(self) -> V1Labeller:
        return V1Labeller(self.archive, split_of_patches(self.lists), excluded_patches(self.lists))

    def label_table(self) -> tuple[pd.DataFrame, dict]:
        """Read every patch's metadata once: the kept patches and a summary of what was dropped."""
        labeller = self.labeller()
        patches = iter_patches(self.archive, read_bands=False, expected=V1_PATCH_FILES)
        for patch in tqdm(patches, desc="labels", unit=" patches", mininterval=2):
            labeller.add(patch)
        return labeller.finish()


class V1Labeller:
    """Labels v1.0 patches from their metadata JSON, the split lists and the snow and cloud/shadow lists."""

    def __init__(self, archive: Path, split_of: dict[str, str], excluded: dict[str, str]) -> None:
        self.archive = archive
        self.split_of = split_of
        self.excluded = excluded
        self.rows: list[tuple[str, str, list[str], list[str]]] = []
        self.dropped: Counter[str] = Counter()
        self.seen: set[str] = set()

    def candidates(self) -> dict[str, list[str]]:
        """The listed patches that are not excluded, by name: those without a BigEarthNet-19 label drop later."""
        kept = sorted(name for name in self.split_of if name not in self.excluded)
        return {split: [name for name in kept if self.split_of[name] == split] for split in SPLITS}

    def known(self) -> None:
        """None: a patch's labels are known once its metadata JSON has gone by."""
        return None

    def add(self, patch: RawPatch) -> bool:
        if patch.name in self.seen:
            raise InputError(f"{self.archive}: patch {patch.name} appears twice")
        self.seen.add(patch.name)
        original = [sys.intern(name) for name in patch.labels(source=str(self.archive))]  # one copy of each name
        new = to_bigearthnet19(original, source=f"{self.archive}: {patch.name}")
        if patch.name in self.excluded:
            self.dropped[self.excluded[patch.name]] += 1
        elif not new:
            self.dropped["no_19_class_label"] += 1
        elif patch.name not in self.split_of:
            self.dropped["not_in_split_lists"] += 1
        else:
            self.rows.append((patch.name, self.split_of[patch.name], new, original))
            return True
        return False

    def finish(self) -> tuple[pd.DataFrame, dict]:
        missing = Counter(split for name, split in self.split_of.items() if name not in self.seen)
        if missing:
            log.warning("split lists name %d patch(es) absent from the archive: %s", missing.total(), dict(missing))
        table = finish_table(self.rows)
        summary = {
            "archive": str(self.archive),
            "patches_in_archive": len(self.seen),
            "kept": {split: int((table["split"] == split).sum()) for split in SPLITS},
            "dropped": {reason: self.dropped[reason] for reason in DROP_REASONS},
            "listed_but_absent": {split: missing[split] for split in SPLITS},
        }
        return table, summary
