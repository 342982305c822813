"""Write outputs under temporary names and move them into place only when all are complete."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _temporary(path: Path) -> Path:
    """A hidden sibling that keeps the suffix, since some writers (``np.save``) append theirs."""
    suffixes = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffixes)] if suffixes else path.name
    return path.with_name(f".{stem}.tmp-{os.getpid()}{suffixes}")


@contextmanager
def atomic_outputs(*paths: Path) -> Iterator[tuple[Path, ...]]:
    """Yield temporary paths; rename them to ``paths`` on success, delete them on any error.

    A crash therefore never leaves a file that looks finished to Snakemake or to a user.
    """
    finals = [Path(path) for path in paths]
    temporaries = [_temporary(path) for path in finals]
    for path in finals:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tuple(temporaries)
        for temporary, final in zip(temporaries, finals, strict=True):
            if final.is_dir():
                shutil.rmtree(final)
            os.replace(temporary, final)
    finally:
        for temporary in temporaries:
            if temporary.is_dir():
                shutil.rmtree(temporary, ignore_errors=True)
            elif temporary.exists():
                temporary.unlink()
