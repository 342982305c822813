"""The lean tar reader against Python's tarfile, on every header format tarfile writes."""

from __future__ import annotations

import io
import tarfile

import pytest

from benloss.data.tarstream import TarFormatError, iter_files

from ..support import EXAMPLE_ARCHIVE

LONG = "BigEarthNet-v1.0/S2B_MSIL2A_20170924T93020_69_24/" + "S2B_MSIL2A_20170924T93020_69_24_labels_metadata.json"


def make_tar(tar_format: int) -> bytes:
    """A tar of files with short, long (over 100 bytes) and non-ASCII names, a folder, a link and an empty file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        folder = tarfile.TarInfo("BigEarthNet-v1.0")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, size in ((LONG, 1234), ("short_B01.tif", 512), ("empty", 0), ("Zürich/ß.tif", 7)):
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(bytes(range(256)) * (size // 256) + b"x" * (size % 256)))
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "short_B01.tif"
        tar.addfile(link)
    return buffer.getvalue()


def tarfile_read(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
                         ids=["ustar", "gnu", "pax"])  # fmt: skip
def test_files_and_bytes_equal_tarfiles(tar_format):
    data = make_tar(tar_format)
    assert list(iter_files(io.BytesIO(data), lambda name: True)) == tarfile_read(data)


def test_real_bigearthnet_example_reads_like_tarfile():
    import bz2

    data = bz2.decompress(EXAMPLE_ARCHIVE.read_bytes())
    ours = list(iter_files(io.BytesIO(data), lambda name: True))
    assert ours == tarfile_read(data) and len(ours) == 6 * 13


def test_unwanted_files_are_named_but_not_read():
    files = dict(iter_files(io.BytesIO(make_tar(tarfile.PAX_FORMAT)), lambda name: name.endswith(".json")))
    assert files[LONG] == tarfile_read(make_tar(tarfile.PAX_FORMAT))[0][1]
    assert files["short_B01.tif"] is None and files["empty"] is None


@pytest.mark.parametrize("cut", [100, 700, 1800])
def test_a_cut_stream_is_an_error(cut):
    with pytest.raises(TarFormatError, match="stream ends"):
        list(iter_files(io.BytesIO(make_tar(tarfile.GNU_FORMAT)[:cut]), lambda name: True))


def test_a_damaged_header_fails_its_checksum():
    data = bytearray(make_tar(tarfile.USTAR_FORMAT))
    data[600] ^= 0x01  # inside the second member's header
    with pytest.raises(TarFormatError, match="checksum mismatch"):
        list(iter_files(io.BytesIO(bytes(data)), lambda name: True))


def test_data_after_the_end_marker_is_an_error():
    data = make_tar(tarfile.USTAR_FORMAT) + b"stray bytes"
    with pytest.raises(TarFormatError, match="unreadable header"):
        list(iter_files(io.BytesIO(data), lambda name: True))
