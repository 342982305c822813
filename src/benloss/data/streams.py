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
import io
import logging
import queue
import threading
import zlib
from pathlib import Path
from typing import IO

from benloss.errors import InputError

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


def open_decompressed(path: Path, read_ahead: bool = True) -> IO[bytes]:
    """The decompressed bytes of a ``.tar.gz``/``.tgz``, ``.tar.zst``, ``.tar.bz2`` or plain ``.tar``.

    With ``read_ahead`` a thread decompresses ahead of the reader (``ReadAhead``).
    """
    stream = _open_plain(path)
    return io.BufferedReader(ReadAhead(stream), READ_AHEAD_BLOCK) if read_ahead else stream


def _open_plain(path: Path) -> IO[bytes]:
    if path.name.endswith(".tar.zst"):
        return open_zstd(path)
    if path.name.endswith(GZIP_SUFFIXES):
        return open_gzip(path)
    if path.name.endswith(".tar.bz2"):
        return bz2.open(path)
    return open(path, "rb")


#: Bytes per block the read-ahead thread hands over, and how many blocks it may hold (bounded memory).
READ_AHEAD_BLOCK = 1 << 20
READ_AHEAD_BLOCKS = 4


class ReadAhead(io.RawIOBase):
    """A stream read by a background thread, block by block, so decompression overlaps the reader's work.

    The decoders (zlib, ISA-L, zstd, bz2) release the GIL while they decompress, so on two or more cores the
    thread's decompression runs beside the parsing and decoding of the blocks already read. At most
    ``READ_AHEAD_BLOCKS`` blocks wait at a time; an error in the thread is raised by the next read.

    A decoder that fails (a cut or corrupt archive) drops what it had decoded in that call, so the reader
    stops up to one block earlier than it would without the thread. Smaller blocks would keep that, but each
    block hands the GIL back and forth: 64 kB blocks made the prepare step 45 % slower than 1 MB blocks.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self._blocks: queue.Queue[bytes | BaseException] = queue.Queue(READ_AHEAD_BLOCKS)
        self._current = memoryview(b"")
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_ahead, name="read-ahead", daemon=True)
        self._thread.start()

    def _read_ahead(self) -> None:
        try:
            while not self._stop.is_set():
                block = self._stream.read(READ_AHEAD_BLOCK)
                self._hand_over(block)
                if not block:
                    return
        except BaseException as error:  # raised again in the reader's thread
            self._hand_over(error)

    def _hand_over(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._blocks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._current:
            if self._ended:
                return 0
            item = self._blocks.get()
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            if not item:
                self._ended = True
                return 0
            self._current = memoryview(item)
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        return size

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            self._thread.join()
            self._stream.close()
        super().close()


def open_gzip(path: Path, decoder: str | None = None) -> IO[bytes]:
    """``path``'s decompressed bytes as a binary stream, through ``decoder`` or the fastest one installed."""
    name = decoder or available_gzip_decoders()[0]
    if name not in GZIP_DECODERS:
        raise InputError(f"unknown gzip decoder {name!r}; known: {', '.join(GZIP_DECODERS)}")
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
