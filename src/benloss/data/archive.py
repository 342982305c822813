"""Stream BigEarthNet-S2 patches out of an archive (.tar.gz, .tar.bz2, .tar.zst) or an extracted folder.

A tar archive is read in one sequential pass, never extracted (``benloss.data.tarstream``): a patch is handed on
as soon as its files have gone by (v1.0: twelve bands and the label metadata; v2.0: twelve bands; a v2.0
reference-map archive: one map), so memory holds at most a few patches.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benloss.data.geotiff import read_deflated, read_uncompressed
from benloss.data.streams import decoding_errors, open_decompressed
from benloss.data.tarstream import TarFormatError, iter_files
from benloss.errors import InputError
from benloss.facts.bands import BAND_SIZE, BANDS, DTYPE

METADATA_SUFFIX = "labels_metadata.json"
REFERENCE_MAP = "reference_map"
#: The files of one patch in each layout: v1.0 patches, v2.0 patches and v2.0 reference maps.
V1_PATCH_FILES: tuple[str, ...] = (*BANDS, METADATA_SUFFIX)
V2_PATCH_FILES: tuple[str, ...] = BANDS
MAP_PATCH_FILES: tuple[str, ...] = (REFERENCE_MAP,)
MAP_SIZE = 120
_MEMBER = re.compile(
    r"(?:^|/)(?P<patch>[^/]+)/(?P=patch)_(?P<kind>B\d[\dA]|labels_metadata\.json|reference_map)(?:\.tif)?$"
)
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.zst", ".tar")


class ArchiveError(InputError):
    """A problem with the archive's content: it names the archive, the patch and what is wrong."""


@dataclass
class RawPatch:
    """One patch as stored: its name, label metadata and the undecoded GeoTIFF bytes of the wanted files."""

    name: str
    expected: tuple[str, ...] = V1_PATCH_FILES
    metadata: bytes = b""
    bands: dict[str, bytes] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return len(self.seen) == len(self.expected)

    def missing(self) -> list[str]:
        return [kind for kind in self.expected if kind not in self.seen]

    def labels(self, source: str = "") -> list[str]:
        """The original CORINE label names of the metadata JSON, checked for form."""
        where = f"{source}: " if source else ""
        try:
            document = json.loads(self.metadata)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ArchiveError(f"{where}{self.name}_{METADATA_SUFFIX} is not valid JSON ({error})") from None
        labels = document.get("labels") if isinstance(document, dict) else None
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise ArchiveError(f"{where}{self.name}_{METADATA_SUFFIX} has no 'labels' list of names")
        return labels


def is_tar(path: Path) -> bool:
    return path.is_file() and path.name.endswith(TAR_SUFFIXES)


#: Fewer bytes than a patch of Sentinel-2 imagery takes in a compressed tar archive: 12 bands, 160 kB of pixels,
#: and 13 headers of 512 bytes (BigEarthNet: about 112 kB a patch in its .tar.gz; the demo 123 kB).
MIN_PATCH_BYTES = 8_000


def patch_capacity(source: Path) -> int:
    """At most how many patches ``source`` holds: a tar archive's size over ``MIN_PATCH_BYTES``, or the number
    of folders below an extracted archive (each patch is one; walking a full archive takes a while)."""
    source = Path(source)
    if is_tar(source):
        return source.stat().st_size // MIN_PATCH_BYTES + 1
    return sum(len(folders) for _, folders, _ in os.walk(source))


def _classify(member_name: str) -> tuple[str, str] | None:
    match = _MEMBER.search(member_name)
    if match is None:
        return None
    kind = match["kind"]
    return match["patch"], (METADATA_SUFFIX if kind.startswith("labels") else kind)


def iter_patches(
    source: Path, read_bands: bool = True, wanted: set[str] | None = None, expected: tuple[str, ...] = V1_PATCH_FILES
) -> Iterator[RawPatch]:
    """Yield every patch of ``source`` with its metadata and, if ``read_bands``, the bytes of its images.

    ``expected`` names the files of a patch (``V1_PATCH_FILES``, ``V2_PATCH_FILES`` or ``MAP_PATCH_FILES``);
    other files are skipped. ``wanted`` limits image reading to those patch names (others still yield, with
    metadata only).
    Every yielded patch is complete; a patch missing a file stops the stream with an error naming it.
    """
    source = Path(source)
    if source.is_dir():
        yield from _iter_folder(source, read_bands, wanted, expected)
    elif is_tar(source):
        yield from _iter_tar(source, read_bands, wanted, expected)
    elif not source.exists():
        raise FileNotFoundError(f"archive {source} does not exist")
    else:
        raise ArchiveError(f"{source}: not a folder nor a tar archive ({', '.join(TAR_SUFFIXES)})")


def _iter_tar(path: Path, read_bands: bool, wanted: set[str] | None, expected: tuple[str, ...]) -> Iterator[RawPatch]:
    classified: dict[str, tuple[str, str] | None] = {}  # the file ``keep`` just saw, so it is classified once

    def keep(member: str) -> bool:
        kind = classified[member] = _classify(member)
        return (
            kind is not None
            and kind[1] in expected
            and (kind[1] == METADATA_SUFFIX or (read_bands and (wanted is None or kind[0] in wanted)))
        )

    pending: dict[str, RawPatch] = {}
    last = "(start of archive)"
    try:
        with open_decompressed(path) as stream:
            for member, data in iter_files(stream, keep):
                kind = classified.pop(member)
                if kind is None or kind[1] not in expected:
                    continue
                name, what = kind
                patch = pending.setdefault(name, RawPatch(name, expected))
                if what == METADATA_SUFFIX:
                    patch.metadata = data or b""
                elif data is not None:
                    patch.bands[what] = data
                patch.seen.add(what)
                last = member
                if patch.complete:
                    yield pending.pop(name)
    except (TarFormatError, EOFError, OSError, *decoding_errors()) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ArchiveError(f"{path}: archive is truncated or corrupt after {last} ({error})") from None
    _check_nothing_pending(path, pending)


def _iter_folder(
    root: Path, read_bands: bool, wanted: set[str] | None, expected: tuple[str, ...]
) -> Iterator[RawPatch]:
    pending: dict[str, RawPatch] = {}
    for directory, _, files in os.walk(root):
        names = [_classify(f"{os.path.basename(directory)}/{file}") for file in sorted(files)]
        for file, kind in zip(sorted(files), names, strict=True):
            if kind is None or kind[1] not in expected:
                continue
            name, what = kind
            patch = pending.setdefault(name, RawPatch(name, expected))
            path = Path(directory, file)
            if what == METADATA_SUFFIX:
                patch.metadata = path.read_bytes()
            elif read_bands and (wanted is None or name in wanted):
                patch.bands[what] = path.read_bytes()
            patch.seen.add(what)
            if patch.complete:
                yield pending.pop(name)
    _check_nothing_pending(root, pending)


def _check_nothing_pending(source: Path, pending: dict[str, RawPatch]) -> None:
    if pending:
        name, patch = next(iter(pending.items()))
        raise ArchiveError(
            f"{source}: {len(pending)} patch(es) incomplete, e.g. {name} lacks {', '.join(patch.missing())}"
        )


def decode_band(data: bytes, patch: str, band: str) -> np.ndarray:
    """Decode one band's (or, ``band`` being ``REFERENCE_MAP``, a map's) GeoTIFF bytes, checking count, dtype, size.

    BigEarthNet's own layouts (uncompressed bands; DEFLATE reference maps) are read directly; anything else
    through rasterio.
    """
    array = read_uncompressed(data)
    if array is None:
        array = read_deflated(data)
    if array is None:
        array = decode_band_with_rasterio(data, patch, band)
    if array.dtype != DTYPE:
        raise ArchiveError(f"{patch}_{band}.tif: dtype {array.dtype.name}, expected uint16")
    size = BAND_SIZE.get(band, MAP_SIZE)
    if array.shape != (size, size):
        raise ArchiveError(f"{patch}_{band}.tif: size {array.shape}, expected {(size, size)}")
    return array


def decode_band_with_rasterio(data: bytes, patch: str, band: str) -> np.ndarray:
    """Decode one band's GeoTIFF bytes through GDAL: any layout it reads (the fallback of ``decode_band``)."""
    from rasterio.errors import RasterioError
    from rasterio.io import MemoryFile

    try:
        with MemoryFile(data) as memory, memory.open() as dataset:
            if dataset.count != 1:
                raise ArchiveError(f"{patch}_{band}.tif: {dataset.count} bands, expected 1")
            return dataset.read(1)
    except RasterioError as error:
        raise ArchiveError(f"{patch}_{band}.tif: not a readable GeoTIFF ({error})") from None


def decode_patch(patch: RawPatch) -> dict[str, np.ndarray]:
    """Decode all twelve bands of a patch read with ``read_bands``."""
    return {band: decode_band(patch.bands[band], patch.name, band) for band in BANDS}
