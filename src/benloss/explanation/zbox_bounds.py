"""ZBox's input bounds for LRP: per band, the training split's 0.1st and 99.9th percentile, and the pixels outside.

ZBox needs the lowest and highest value an input can take. A fixed reflectance range of 0 to 1 (raw 0 to
10000) does not hold for Sentinel-2 L2A, whose bright pixels (cloud, snow, roofs) exceed 10000, and the training
split's minimum and maximum can lie tens of standard deviations out (saturated pixels), where the bound terms
dominate the first layer's rule. So the bounds are the 0.1st and 99.9th percentile of each band over the training
split, which the encode stage writes into ``training_band_statistics.csv``. Explained pixels can fall outside;
``bounds_table`` counts them, and those above the old fixed bound.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benloss.data.training_band_statistics import PERCENTILE_COLUMNS
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
    """Per-band 0.1st and 99.9th percentile over the training split, from the encoded folder; the training split's
    minimum and maximum where the file predates the percentiles, fixed bounds without the file (with a warning)."""
    path = Path(encoded) / ENCODED_FILES["training_band_statistics"]
    if not path.exists():
        log.warning("%s absent: ZBox falls back to the fixed bounds raw 0 and 10000 for every band", path)
        return fixed_bounds()
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = {row["band"]: row for row in reader}
        columns = reader.fieldnames or []
    missing = sorted(set(BANDS) - set(rows))
    if missing:
        raise InputError(f"{path}: no bounds for {', '.join(missing)}")
    if all(column in columns for column in PERCENTILE_COLUMNS):
        low_column, high_column = PERCENTILE_COLUMNS
        source = f"training split: {low_column} and {high_column} of {ENCODED_FILES['training_band_statistics']}"
    else:
        log.warning("%s has no %s columns (encoded before them): ZBox takes the training split's min and max; "
                    "re-run the encode step for the percentiles", path, " and ".join(PERCENTILE_COLUMNS))  # fmt: skip
        low_column, high_column = "min", "max"
        source = f"training split: min and max of {ENCODED_FILES['training_band_statistics']}"
    try:
        low = {band: float(rows[band][low_column]) for band in BANDS}
        high = {band: float(rows[band][high_column]) for band in BANDS}
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: needs numeric {low_column} and {high_column} columns ({error})") from error
    if not all(np.isfinite(low[band]) and np.isfinite(high[band]) and low[band] <= high[band] for band in BANDS):
        raise InputError(f"{path}: a band's {low_column} or {high_column} is not a number, or its {low_column} exceeds "
                         f"its {high_column}")  # fmt: skip
    return BoxBounds(low, high, source)


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
