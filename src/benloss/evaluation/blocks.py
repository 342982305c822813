"""Spatial blocks of test patches, the units the bootstrap resamples.

Neighbouring patches of one Sentinel-2 acquisition share land cover, season and atmosphere, so they are not
independent draws. A block is the patches of one acquisition inside one square of ``block`` × ``block`` grid
positions (``benloss.facts.patch_names``); ``block = 1`` makes every patch its own block (independent resampling),
``block = GRID_SIDE`` every acquisition one block.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benloss.errors import InputError
from benloss.facts.patch_names import patch_position


def block_ids(names: Sequence[str], block: int) -> np.ndarray:
    """Block of every patch (int64, numbered 0, 1, … in order of first appearance); with ``block = 1`` every patch
    is its own block, whatever its name."""
    if block < 1:
        raise InputError(f"block size must be at least 1 patch, not {block}")
    if block == 1:
        return independent(len(names))
    keys: dict[tuple[str, int, int], int] = {}
    ids = np.empty(len(names), dtype=np.int64)
    for n, name in enumerate(names):
        position = patch_position(name)
        key = (position.acquisition, position.i // block, position.j // block)
        ids[n] = keys.setdefault(key, len(keys))
    return ids


def independent(n_images: int) -> np.ndarray:
    """Block ids that make every image its own block."""
    return np.arange(n_images, dtype=np.int64)


def block_sizes(ids: np.ndarray) -> np.ndarray:
    """Number of patches in each block."""
    return np.bincount(np.asarray(ids))
