"""Decompressed byte streams of tar archives, through the fastest gzip decoder installed.

Reading BigEarthNet's 66 GB ``.tar.gz`` is bound by gzip decompression on one core. ISA-L's igzip
(``isal``) decodes the same bytes twice as fast as the standard library's zlib, ahead of zlib-ng and of
rapidgzip on one or two cores (``benchmarks/decompress.py``, table in ``benchmarks/README.md``). Without
it the standard library decodes, with identical output.
"""

from __future__ import annotations

import bz2
import contextlib
import importlib
import logging
import zlib
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

#: gzip decoders, fastest first as measured: the module that provides each one's ``open``.
GZIP_DECODERS: dict[str, str] = {"isal": "isal.igzip", "gzip": "gzip"}
GZIP_SUFFIXES = (".tar.gz", ".tgz")
#: Where each decoder keeps the exception it raises on corrupt data (none of them is an ``OSError``).
_ERRORS = {"isal.igzip_lib": "IsalError", "zstandard": "ZstdError"}


def available_gzip_decoders() -> list[str]:
    """The gzip decoders that import here, fastest first (the standard library's always)."""
    found = []
    for name, module in GZIP_DECODERS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        found.append(name)
    return found


def open_decompressed(path: Path) -> IO[bytes]:
    """The decompressed bytes of a ``.tar.gz``/``.tgz``, ``.tar.zst``, ``.tar.bz2`` or plain ``.tar``."""
    if path.name.endswith(".tar.zst"):
        return open_zstd(path)
    if path.name.endswith(GZIP_SUFFIXES):
        return open_gzip(path)
    if path.name.endswith(".tar.bz2"):
        return bz2.open(path)
    return open(path, "rb")


def open_gzip(path: Path, decoder: str | None = None) -> IO[bytes]:
    """``path``'s decompressed bytes as a binary stream, through ``decoder`` or the fastest one installed."""
    name = decoder or available_gzip_decoders()[0]
    if name not in GZIP_DECODERS:
        raise ValueError(f"unknown gzip decoder {name!r}; known: {', '.join(GZIP_DECODERS)}")
    module = importlib.import_module(GZIP_DECODERS[name])
    log.debug("decompressing %s with %s", path, name)
    return module.open(path, "rb")


def create_gzip(path: Path, level: int = 1) -> IO[bytes]:
    """A binary stream that writes ``path`` gzip-compressed, through the fastest encoder installed.

    At level 1 ISA-L compresses the demo's bands five times faster than zlib, into a 10 % larger file.
    """
    module = importlib.import_module(GZIP_DECODERS[available_gzip_decoders()[0]])
    return module.open(path, "wb", compresslevel=level)


def open_zstd(path: Path) -> IO[bytes]:
    """``path``'s decompressed bytes as a binary stream (zstandard's streaming reader: any number of frames)."""
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True, read_across_frames=True)


def decoding_errors() -> tuple[type[Exception], ...]:
    """The exceptions the installed decoders raise on corrupt data, for callers to report as such."""
    errors: list[type[Exception]] = [zlib.error]
    for module, name in _ERRORS.items():
        with contextlib.suppress(ImportError):
            errors.append(getattr(importlib.import_module(module), name))
    return tuple(errors)
