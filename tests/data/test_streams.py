"""Archive streams: every gzip decoder gives the standard library's bytes, and the fallback needs none of them."""

from __future__ import annotations

import gzip
import importlib.util
import io
import sys
import tarfile

import numpy as np
import pytest
import zstandard

from benloss.data import streams
from benloss.data.archive import ArchiveError, iter_patches
from benloss.data.streams import GZIP_DECODERS, available_gzip_decoders, open_gzip

FAST_MODULES = ("isal", "isal.igzip")


def installed(decoder: str) -> bool:
    return importlib.util.find_spec(GZIP_DECODERS[decoder].split(".")[0]) is not None


@pytest.fixture(params=list(GZIP_DECODERS))
def decoder(request) -> str:
    if not installed(request.param):
        pytest.skip(f"{request.param} is not installed")
    return request.param


def test_each_decoder_gives_the_standard_librarys_bytes(demo, decoder):
    archive = demo / "BigEarthNet-demo.tar.gz"
    with open_gzip(archive, decoder) as stream:
        assert stream.read() == gzip.decompress(archive.read_bytes())


def test_without_fast_decoders_the_standard_library_reads_the_same_patches(demo, monkeypatch):
    archive = demo / "BigEarthNet-demo.tar.gz"
    fast = [(p.name, p.metadata, p.bands) for p in iter_patches(archive)]
    for module in FAST_MODULES:
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    assert available_gzip_decoders() == ["gzip"]
    fallback = [(p.name, p.metadata, p.bands) for p in iter_patches(archive)]
    assert fallback == fast and len(fast) == 48


def test_corrupt_gzip_is_an_archive_error_with_each_decoder(demo, decoder, tmp_path, monkeypatch):
    data = bytearray((demo / "BigEarthNet-demo.tar.gz").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (tmp_path / "bad.tar.gz").write_bytes(bytes(data))
    monkeypatch.setattr(streams, "available_gzip_decoders", lambda: [decoder])
    with pytest.raises(ArchiveError, match=r"bad\.tar\.gz: (.*corrupt|\d+ patch\(es\) incomplete)"):
        list(iter_patches(tmp_path / "bad.tar.gz"))


def test_unreadable_tar_header_midway_is_an_error_not_a_shorter_archive(demo, tmp_path):
    """tarfile alone would stop at the broken header and report half the patches as if that were all."""
    plain = bytearray(gzip.decompress((demo / "BigEarthNet-demo.tar.gz").read_bytes()))
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r") as tar:
        members = tar.getmembers()
    victim = members[len(members) // 2]
    plain[victim.offset : victim.offset + 512] = b"\xff" * 512
    (tmp_path / "broken.tar.gz").write_bytes(gzip.compress(bytes(plain)))
    with pytest.raises(ArchiveError, match=r"broken\.tar\.gz: .* corrupt after BigEarthNet-v1\.0/.*checksum"):
        list(iter_patches(tmp_path / "broken.tar.gz", read_bands=False))


def test_zstd_archive_of_several_frames_is_read_to_the_end(demo, tmp_path):
    """zstd tools may write a long archive as several frames (pzstd, --long): all of them are read."""
    plain = gzip.decompress((demo / "BigEarthNet-demo.tar.gz").read_bytes())
    cut = len(plain) // 3
    frames = b"".join(zstandard.ZstdCompressor().compress(part) for part in (plain[:cut], plain[cut:]))
    (tmp_path / "demo.tar.zst").write_bytes(frames)
    names = [p.name for p in iter_patches(tmp_path / "demo.tar.zst", read_bands=False)]
    assert names == [p.name for p in iter_patches(demo / "BigEarthNet-demo.tar.gz", read_bands=False)]


def test_unknown_decoder_is_refused(demo):
    with pytest.raises(ValueError, match="unknown gzip decoder 'pigz'"):
        open_gzip(demo / "BigEarthNet-demo.tar.gz", "pigz")
