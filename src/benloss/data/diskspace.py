"""Refuse to start writing what the disk cannot hold, instead of failing hours later on a full disk."""

from __future__ import annotations

import shutil
from pathlib import Path

from benloss.errors import BenlossError


def size_text(size: float) -> str:
    """A byte count for people: MB below a gigabyte, else GB."""
    return f"{size / 1e6:.1f} MB" if size < 1e9 else f"{size / 1e9:.1f} GB"


class DiskSpaceError(BenlossError, OSError):
    """Too little free space for a stage's outputs: says where, how much is needed and how much is free."""


def require_free_space(target: Path, needed: int, what: str) -> None:
    """Raise ``DiskSpaceError`` unless the file system that will hold ``target`` has ``needed`` bytes free.

    ``target`` need not exist yet: its nearest existing parent tells the file system.
    """
    folder = Path(target).absolute()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DiskSpaceError(
            f"{target}: {what} take about {size_text(needed)}, but the disk holding {folder} has only "
            f"{size_text(free)} free; free some space or write the results elsewhere"
        )
