"""Readers of the encoded folder that ``prepare`` writes (its layout is ``benloss.layout``'s), numpy only, for
the training, evaluation and explanation stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benloss.errors import InputError
from benloss.facts.bands import BAND_GROUPS
from benloss.layout import REFERENCE_MAPS, encoded_array, patch_list

#: Side of a reference map in pixels (the 10 m grid).
MAP_SIDE = 120


def open_encoded(folder: Path, split: str, mode: str = "r") -> dict[str, np.ndarray]:
    """Memory-map one split's arrays: the three band groups and ``labels``."""
    folder = Path(folder)
    parts = [g.name for g in BAND_GROUPS] + ["labels"]
    return {part: np.load(folder / encoded_array(split, part), mmap_mode=mode) for part in parts}


def reference_maps_path(folder: Path, split: str) -> Path:
    """Where a split's reference maps lie (absent for sources without them)."""
    return Path(folder) / encoded_array(split, REFERENCE_MAPS)


def read_reference_maps(folder: Path, split: str, patches: int | None = None) -> np.ndarray | None:
    """A split's reference maps, memory-mapped, (N, 120, 120) uint8 class indices (255 = no class); None where the
    source has none. With ``patches``, checked to hold one map per patch."""
    path = reference_maps_path(folder, split)
    if not path.exists():
        return None
    maps = np.load(path, mmap_mode="r")
    expected = (maps.shape[0] if patches is None else patches, MAP_SIDE, MAP_SIDE)
    if maps.dtype != np.uint8 or maps.shape != expected:
        raise InputError(f"{path}: expected uint8 reference maps of shape {expected}, found {maps.dtype} {maps.shape}")
    return maps


def read_patch_names(folder: Path, split: str) -> list[str]:
    """Patch names of one split, in the row order of its arrays."""
    return (Path(folder) / patch_list(split)).read_text().split()
