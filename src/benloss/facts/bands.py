"""The one home of BigEarthNet-S2's band facts: names, resolution groups, order and statistics."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from benloss.errors import InputError
from benloss.facts.resources import resource


@dataclass(frozen=True)
class BandGroup:
    """Bands that share a ground resolution, and so one branch of the K-Branch CNN."""

    name: str
    resolution_m: int
    size: int
    bands: tuple[str, ...]


#: Resolution groups in the encoded order; the order of bands inside a group is the encoded channel order.
BAND_GROUPS: tuple[BandGroup, ...] = (
    BandGroup("10m", 10, 120, ("B02", "B03", "B04", "B08")),
    BandGroup("20m", 20, 60, ("B05", "B06", "B07", "B8A", "B11", "B12")),
    BandGroup("60m", 60, 20, ("B01", "B09")),
)
#: All twelve bands in encoded order (B10 is not part of BigEarthNet-S2 L2A).
BANDS: tuple[str, ...] = tuple(band for group in BAND_GROUPS for band in group.bands)
BAND_SIZE: dict[str, int] = {band: group.size for group in BAND_GROUPS for band in group.bands}
#: Pixels of each band, where each starts in a patch's bands flattened back to back in encoded order, and their sum.
BAND_PIXELS: dict[str, int] = {band: BAND_SIZE[band] ** 2 for band in BANDS}
BAND_STARTS: dict[str, int] = {band: sum(BAND_PIXELS[b] for b in BANDS[: BANDS.index(band)]) for band in BANDS}
PATCH_PIXELS = sum(BAND_PIXELS.values())
#: True-colour bands (red, green, blue), all in the 10 m group.
RGB: tuple[str, str, str] = ("B04", "B03", "B02")
PATCH_SIZE_M = 1200
DTYPE = np.uint16


@dataclass(frozen=True)
class BandStatistics:
    """Per-band mean and standard deviation of the raw uint16 values."""

    mean: dict[str, float]
    std: dict[str, float]

    def group_arrays(self, group: BandGroup) -> tuple[np.ndarray, np.ndarray]:
        """Means and standard deviations of one group's bands, in channel order, as float32 arrays."""
        mean = np.array([self.mean[b] for b in group.bands], dtype=np.float32)
        std = np.array([self.std[b] for b in group.bands], dtype=np.float32)
        return mean, std

    def write_csv(self, path: Path) -> None:
        """Write ``band,mean,std`` rows in the official band order."""
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["band", "mean", "std"])
            for band in sorted(self.mean, key=official_band_order):
                writer.writerow([band, repr(self.mean[band]), repr(self.std[band])])


def official_band_order(band: str) -> float:
    """Sort key that puts B8A between B08 and B09, as Sentinel-2 numbers them."""
    return 8.5 if band == "B8A" else float(band[1:])


def read_band_statistics(path: Path) -> BandStatistics:
    """Read a ``band,mean,std`` CSV, checking that it covers all twelve bands."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    mean = {row["band"]: float(row["mean"]) for row in rows}
    std = {row["band"]: float(row["std"]) for row in rows}
    missing = sorted(set(BANDS) - set(mean))
    if missing:
        raise InputError(f"{path}: band statistics lack {', '.join(missing)}")
    if any(value <= 0 for value in std.values()):
        raise InputError(f"{path}: a standard deviation is not positive")
    return BandStatistics(mean, std)


@cache
def official_band_statistics() -> BandStatistics:
    """The official BigEarthNet-S2 statistics (bigearthnet-models-tf), shipped under ``resources/``."""
    return read_band_statistics(resource("band_statistics.csv"))
