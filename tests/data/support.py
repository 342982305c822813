"""Helpers of the data-stage tests (no tests here): the shipped official lists, archive rewriting, disk usage."""

from __future__ import annotations

import io
import tarfile
from collections import namedtuple
from pathlib import Path

from benloss.data.archive import iter_patches
from benloss.facts.splits import list_paths, read_list, write_list

from ..support import EXAMPLE_ARCHIVE, ROOT

OFFICIAL_LISTS = list_paths(ROOT / "resources" / "splits", suffix=".bz2")
#: What ``shutil.disk_usage`` returns, for tests that pretend a disk is full.
Usage = namedtuple("Usage", "total used free")


def rewrite_archive(source: Path, target: Path, change) -> None:
    """Copy a tar archive member by member, letting ``change(name, data)`` return new bytes or None to drop."""
    with tarfile.open(source) as old, tarfile.open(target, "w:gz") as new:
        for member in old:
            data = old.extractfile(member).read() if member.isfile() else b""
            data = change(member.name, data)
            if data is None:
                continue
            member.size = len(data)
            new.addfile(member, io.BytesIO(data))


def lists_with_an_example_in_val(folder: Path) -> dict[str, Path]:
    """The official lists, but the first training patch of the six-patch example archive moved to the validation
    list (the archive holds none of val's patches): every split then has a patch in the archive."""
    example = {patch.name for patch in iter_patches(EXAMPLE_ARCHIVE, read_bands=False)}
    train = read_list(OFFICIAL_LISTS["train"])
    moved = min(example & set(train))
    write_list(folder / "train.csv", [name for name in train if name != moved])
    write_list(folder / "val.csv", [*read_list(OFFICIAL_LISTS["val"]), moved])
    return OFFICIAL_LISTS | {"train": folder / "train.csv", "val": folder / "val.csv"}
