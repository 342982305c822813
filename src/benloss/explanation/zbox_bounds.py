"""ZBox's input bounds for LRP: per band, the training split's minimum and maximum, and the pixels they miss.

ZBox needs the lowest and highest value an input can take. A fixed reflectance range of 0 to 1 (raw 0 to
10000) does not hold for Sentinel-2 L2A, whose bright pixels (cloud, snow, roofs) exceed 10000, so the bounds
come from the data: the encode stage writes each band's minimum and maximum over the training split into
``training_band_statistics.csv``. Test pixels can still fall outside; ``bounds_table`` counts them, and those
above the old fixed bound.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benloss.errors import InputError
from benloss.facts.bands import BAND_GROUPS, BANDS, BandGroup
from benloss.layout import ENCODED_FILES
from benloss.training.batches import EncodedSplit

log = logging.getLogger(__name__)

REFLECTANCE_MAX = 10000.0


@dataclass(frozen=True)
class BoxBounds:
    """ZBox's raw per-band input bounds (uint16 digital numbers) and where they come from."""

    low: dict[str, float]
    high: dict[str, float]
    source: str

    def group_arrays(self, group: BandGroup) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of one group's bands, in channel order, as float32 arrays."""
        return (np.array([self.low[b] for b in group.bands], dtype=np.float32),
                np.array([self.high[b] for b in group.bands], dtype=np.float32))  # fmt: skip


def fixed_bounds() -> BoxBounds:
    """The reflectance range 0 to 1 for every band: raw 0 and 10000."""
    return BoxBounds(dict.fromkeys(BANDS, 0.0), dict.fromkeys(BANDS, REFLECTANCE_MAX), "fixed: raw 0 and 10000")


def zbox_bounds(encoded: Path) -> BoxBounds:
    """Per-band minimum and maximum over the training split, from the encoded folder; fixed bounds without it."""
    path = Path(encoded) / ENCODED_FILES["training_band_statistics"]
    if not path.exists():
        log.warning("%s absent: ZBox falls back to the fixed bounds raw 0 and 10000 for every band", path)
        return fixed_bounds()
    with open(path, newline="") as handle:
        rows = {row["band"]: row for row in csv.DictReader(handle)}
    missing = sorted(set(BANDS) - set(rows))
    if missing:
        raise InputError(f"{path}: no min/max for {', '.join(missing)}")
    try:
        low = {band: float(rows[band]["min"]) for band in BANDS}
        high = {band: float(rows[band]["max"]) for band in BANDS}
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: needs numeric min and max columns ({error})") from error
    if not all(np.isfinite(low[band]) and np.isfinite(high[band]) and low[band] <= high[band] for band in BANDS):
        raise InputError(f"{path}: a band's min or max is not a number, or its min exceeds its max")
    return BoxBounds(low, high, f"training split: min and max of {ENCODED_FILES['training_band_statistics']}")


def bounds_table(split: EncodedSplit, rows: np.ndarray, bounds: BoxBounds, batch: int = 32) -> pd.DataFrame:
    """Per band: the bounds, and how many pixels of the given patches lie above raw 10000 (the old upper bound)
    and outside ``bounds``."""
    counts = {band: np.zeros(3, dtype=np.int64) for band in BANDS}
    for start in range(0, len(rows), batch):
        arrays = split.gather(np.sort(rows[start : start + batch]))
        for group in BAND_GROUPS:
            values = arrays[group.name].numpy()
            for channel, band in enumerate(group.bands):
                pixels = values[:, channel]
                outside = (pixels < bounds.low[band]) | (pixels > bounds.high[band])
                counts[band] += (pixels.size, int((pixels > REFLECTANCE_MAX).sum()), int(outside.sum()))
    return pd.DataFrame(
        [{"band": band, "low": bounds.low[band], "high": bounds.high[band], "pixels": n, "above_10000": above,
          "outside_bounds": outside, "source": bounds.source} for band, (n, above, outside) in counts.items()]
    )  # fmt: skip
