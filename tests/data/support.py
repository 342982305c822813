"""Helpers of the data-stage tests (no tests here): the shipped official lists, archive rewriting, disk usage."""

from __future__ import annotations

import io
import tarfile
from collections import namedtuple
from pathlib import Path

from benloss.facts.splits import list_paths

from ..support import ROOT

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
