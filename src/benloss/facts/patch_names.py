"""What a BigEarthNet-S2 patch name says: the acquisition it was cut from and its position on that scene's grid.

v1.0 names are ``<product>_<i>_<j>`` (``S2A_MSIL2A_20170613T101031_26_57``), v2.0 names add the tile,
``<product>_N9999_R022_T33UUP_<i>_<j>``; in both the two trailing numbers place the 1.2 km patch on the grid of
its Sentinel-2 scene (0–90 across a 110 km tile) and everything before them names the acquisition. In v1.0 that is
the datatake, which can span several tiles numbered on the same grid; v2.0's names the tile too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from benloss.errors import InputError

#: Grid positions across a tile (numbered 0 to 90): a block of this side holds a whole acquisition.
GRID_SIDE = 91

_NAME = re.compile(r"^(?P<acquisition>S2[AB]_MSIL2A_\d{8}T\d{5,6}(?:_\w+?)?)_(?P<i>\d{1,3})_(?P<j>\d{1,3})$")


@dataclass(frozen=True)
class PatchPosition:
    """Where a patch lies: its acquisition and its grid cell (``i``, ``j``) on that scene."""

    acquisition: str
    i: int
    j: int


def patch_position(name: str) -> PatchPosition:
    """The acquisition and grid position of a v1.0 or v2.0 patch name."""
    found = _NAME.match(name)
    if found is None:
        raise InputError(
            f"patch name {name!r} is not a BigEarthNet-S2 name (<S2A|S2B>_MSIL2A_<date>T<time>[_<tile parts>]_<i>_<j>)"
        )
    return PatchPosition(found["acquisition"], int(found["i"]), int(found["j"]))
