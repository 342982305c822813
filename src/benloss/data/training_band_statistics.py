"""Per-band statistics of the training split, accumulated exactly while encoding.

Sums and sums of squares are Python integers (the raw values are uint16 digital numbers), so mean and
standard deviation are exact up to the final float64 division, whatever the archive's size. A histogram of the
65,536 possible values per band gives exact percentiles too: the 0.1st and 99.9th are LRP's input bounds
(``benloss.explanation.zbox_bounds``), which the extremes (clouds, snow, saturated pixels) would stretch.
"""

from __future__ import annotations

import csv
import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from benloss.data.encoded import open_encoded
from benloss.errors import InputError
from benloss.facts.bands import BAND_GROUPS, BAND_PIXELS, BAND_STARTS, BANDS, PATCH_PIXELS, BandStatistics

#: Percentiles of each band written beside the moments: LRP's input bounds.
BOUND_PERCENTILES = (0.1, 99.9)
#: The percentiles' column names, in ``BOUND_PERCENTILES`` order.
PERCENTILE_COLUMNS = tuple(f"p{q:g}" for q in BOUND_PERCENTILES)
COLUMNS = ("band", "mean", "std", "min", "max", *PERCENTILE_COLUMNS)
_VALUES = int(np.iinfo(np.uint16).max) + 1
#: Patches whose pixels are counted into the histograms at once: fewer 65,536-bin counts than one a patch, and a
#: temporary copy (8 bytes a pixel) small beside the encoder's memory.
_HISTOGRAM_BLOCK = 8
_STARTS = np.array([BAND_STARTS[band] for band in BANDS])
#: Patches read at a time when the statistics are taken from an encoded split (``split_statistics``).
_BLOCK = 256


class BandAccumulator:
    """Running count, sum, sum of squares, minimum, maximum and histogram of each band's pixels."""

    def __init__(self) -> None:
        self.count = dict.fromkeys(BANDS, 0)
        self.total = dict.fromkeys(BANDS, 0)
        self.squares = dict.fromkeys(BANDS, 0)
        self.low: dict[str, int] = {}
        self.high: dict[str, int] = {}
        self._histogram = {band: np.zeros(_VALUES, dtype=np.int64) for band in BANDS}
        self._pending = np.empty((_HISTOGRAM_BLOCK, PATCH_PIXELS), dtype=np.uint16)
        self._n_pending = 0

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
        self._pending[self._n_pending] = pixels  # copied: the caller reuses its buffer
        self._n_pending += 1
        if self._n_pending == _HISTOGRAM_BLOCK:
            self._count_pending()

    def _count_pending(self) -> None:
        block = self._pending[: self._n_pending]
        for band in BANDS:
            values = block[:, BAND_STARTS[band] : BAND_STARTS[band] + BAND_PIXELS[band]].ravel()
            self._histogram[band] += np.bincount(values, minlength=_VALUES)
        self._n_pending = 0

    def histogram(self, band: str) -> np.ndarray:
        """How many pixels of the band hold each raw value 0 to 65,535."""
        self._count_pending()
        return self._histogram[band]

    def mean_std(self, band: str) -> tuple[float, float]:
        """Mean and population standard deviation of one band (exact integer arithmetic until the end)."""
        n, total = self.count[band], self.total[band]
        if n == 0:
            return math.nan, math.nan
        return total / n, math.sqrt((n * self.squares[band] - total * total) / (n * n))

    def percentile(self, band: str, q: float) -> float:
        """The q-th percentile of one band's pixels: the smallest value at least q % of them do not exceed
        (numpy's ``inverted_cdf``), exact from the histogram; NaN without pixels."""
        n = self.count[band]
        if n == 0:
            return math.nan
        rank = max(1, math.ceil(Fraction(str(q)) / 100 * n))
        return float(np.searchsorted(np.cumsum(self.histogram(band)), rank, side="left"))

    def band_statistics(self) -> BandStatistics:
        """Mean and standard deviation of every band, for normalisation."""
        if not self.count[BANDS[0]]:
            raise InputError("no training patches to compute the normalising band statistics from")
        pairs = {band: self.mean_std(band) for band in BANDS}
        return BandStatistics({b: m for b, (m, _) in pairs.items()}, {b: s for b, (_, s) in pairs.items()})

    def write_csv(self, path: Path) -> None:
        """Write ``COLUMNS`` rows (band, mean, std, min, max, the bound percentiles) in encoded band order."""
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for band in BANDS:
                mean, std = self.mean_std(band)
                percentiles = [self.percentile(band, q) for q in BOUND_PERCENTILES]
                writer.writerow([band, repr(mean), repr(std), self.low.get(band, "nan"), self.high.get(band, "nan"),
                                 *percentiles])  # fmt: skip


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
