"""Per-band statistics of the training split, accumulated exactly while encoding.

Sums and sums of squares are Python integers (the raw values are uint16 digital numbers), so mean and
standard deviation are exact up to the final float64 division, whatever the archive's size.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from benloss.data.encoded import open_encoded
from benloss.errors import InputError
from benloss.facts.bands import BAND_GROUPS, BAND_PIXELS, BAND_STARTS, BANDS, BandStatistics

COLUMNS = ("band", "mean", "std", "min", "max")
_STARTS = np.array([BAND_STARTS[band] for band in BANDS])
#: Patches read at a time when the statistics are taken from an encoded split (``split_statistics``).
_BLOCK = 256


class BandAccumulator:
    """Running count, sum, sum of squares, minimum and maximum of each band's pixels."""

    def __init__(self) -> None:
        self.count = dict.fromkeys(BANDS, 0)
        self.total = dict.fromkeys(BANDS, 0)
        self.squares = dict.fromkeys(BANDS, 0)
        self.low: dict[str, int] = {}
        self.high: dict[str, int] = {}

    def add(self, pixels: np.ndarray) -> None:
        """Add one patch: its twelve bands' uint16 pixels flattened in encoded order, back to back."""
        wide = pixels.astype(np.uint64)
        totals = np.add.reduceat(wide, _STARTS)  # below 2**64: 14,400 pixels of at most 65,535 (squared)
        squares = np.add.reduceat(wide * wide, _STARTS)
        lows = np.minimum.reduceat(pixels, _STARTS).tolist()
        highs = np.maximum.reduceat(pixels, _STARTS).tolist()
        for band, total, square, low, high in zip(BANDS, totals.tolist(), squares.tolist(), lows, highs, strict=True):
            self.count[band] += BAND_PIXELS[band]
            self.total[band] += total
            self.squares[band] += square
            self.low[band] = min(self.low.get(band, low), low)
            self.high[band] = max(self.high.get(band, high), high)

    def mean_std(self, band: str) -> tuple[float, float]:
        """Mean and population standard deviation of one band (exact integer arithmetic until the end)."""
        n, total = self.count[band], self.total[band]
        if n == 0:
            return math.nan, math.nan
        return total / n, math.sqrt((n * self.squares[band] - total * total) / (n * n))

    def band_statistics(self) -> BandStatistics:
        """Mean and standard deviation of every band, for normalisation."""
        if not self.count[BANDS[0]]:
            raise InputError("no training patches to compute the normalising band statistics from")
        pairs = {band: self.mean_std(band) for band in BANDS}
        return BandStatistics({b: m for b, (m, _) in pairs.items()}, {b: s for b, (_, s) in pairs.items()})

    def write_csv(self, path: Path) -> None:
        """Write ``band,mean,std,min,max`` rows in encoded band order."""
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for band in BANDS:
                mean, std = self.mean_std(band)
                writer.writerow([band, repr(mean), repr(std), self.low.get(band, "nan"), self.high.get(band, "nan")])


def split_statistics(folder: Path, split: str) -> BandAccumulator:
    """The statistics of the rows of an encoded split, read back from its arrays in blocks of patches.

    The band groups hold the bands in encoded order, so a patch's group rows back to back are what ``add`` takes;
    the sums are exact integers, so the result equals accumulating the same patches while they were encoded.
    """
    arrays = open_encoded(folder, split)
    accumulator = BandAccumulator()
    for start in range(0, len(arrays["labels"]), _BLOCK):
        groups = [arrays[g.name][start : start + _BLOCK] for g in BAND_GROUPS]
        block = np.concatenate([group.reshape(len(group), -1) for group in groups], axis=1)
        for pixels in block:
            accumulator.add(pixels)
    return accumulator
