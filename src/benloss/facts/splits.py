"""Official split and exclusion lists: one patch name per line, no header (plain, .bz2 or .gz)."""

from __future__ import annotations

import bz2
import gzip
from collections.abc import Iterable, Mapping
from pathlib import Path

from benloss.errors import InputError
from benloss.layout import V1_LIST_FILES

SPLITS: tuple[str, ...] = ("train", "val", "test")
EXCLUSIONS: tuple[str, ...] = ("snow", "cloud")
#: The official file name of each list.
LIST_FILES: dict[str, str] = V1_LIST_FILES


def list_paths(folder: Path, suffix: str = "") -> dict[str, Path]:
    """The five lists in ``folder`` under their official names (``suffix`` e.g. ``.bz2``)."""
    return {key: Path(folder) / f"{name}{suffix}" for key, name in LIST_FILES.items()}


def read_list(path: Path) -> list[str]:
    """Read a list of patch names, tolerating CRLF line ends and blank lines."""
    path = Path(path)
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    with opener(path, "rt", newline="") as handle:
        return [line.strip() for line in handle if line.strip()]


def write_list(path: Path, names: Iterable[str]) -> None:
    """Write a list in the official format (CRLF line ends, no header)."""
    with open(path, "w", newline="") as handle:
        handle.writelines(f"{name}\r\n" for name in names)


def split_of_patches(lists: Mapping[str, Path]) -> dict[str, str]:
    """Map each patch named in the train/val/test lists to its split; a patch in two splits is an error."""
    split_of: dict[str, str] = {}
    for split in SPLITS:
        for name in read_list(lists[split]):
            previous = split_of.setdefault(name, split)
            if previous != split:
                raise InputError(f"patch {name} is in both the {previous} list and the {split} list ({lists[split]})")
    return split_of


def excluded_patches(lists: Mapping[str, Path]) -> dict[str, str]:
    """Map each patch of the snow and cloud/shadow lists to its reason for exclusion."""
    reasons: dict[str, str] = {}
    for reason in EXCLUSIONS:
        for name in read_list(lists[reason]):
            reasons.setdefault(name, reason)
    return reasons
