"""The direct GeoTIFF reader against rasterio, on every layout GDAL writes for one band."""

from __future__ import annotations

import struct
import tarfile
from collections.abc import Iterator

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from benloss.data.archive import ArchiveError, decode_band
from benloss.data.geotiff import first_directory, read_deflated, read_uncompressed, write_uncompressed

from ..support import EXAMPLE_ARCHIVE, FIXTURES

EXAMPLE = EXAMPLE_ARCHIVE


def geotiff(array: np.ndarray, **options) -> bytes:
    """GeoTIFF bytes as GDAL writes them; ``options`` are creation options (tiling, compression, endianness)."""
    count = 1 if array.ndim == 2 else array.shape[0]
    profile = {"driver": "GTiff", "height": array.shape[-2], "width": array.shape[-1], "count": count,
               "dtype": array.dtype.name, "crs": "EPSG:32633", "transform": from_origin(4e5, 5e6, 10, 10),
               **options}  # fmt: skip
    with rasterio.MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(array if array.ndim == 3 else array[None])
        return memory.read()


def rasterio_read(data: bytes) -> np.ndarray:
    with rasterio.MemoryFile(data) as memory, memory.open() as dataset:
        return dataset.read(1)


@pytest.fixture
def pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 2**16, size=(60, 60), dtype=np.uint16)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"blockysize": 7},
        {"blockysize": 60},
        {"tiled": True, "blockxsize": 16, "blockysize": 16},
        {"tiled": True, "blockxsize": 32, "blockysize": 48},
        {"ENDIANNESS": "BIG"},
        {"ENDIANNESS": "BIG", "tiled": True, "blockxsize": 16, "blockysize": 16},
    ],
    ids=["default", "strips-of-7", "one-strip", "tiles-16", "tiles-32x48", "big-endian", "big-endian-tiles"],
)
def test_uncompressed_layouts_read_like_rasterio(pixels, options):
    data = geotiff(pixels, **options)
    array = read_uncompressed(data)
    assert array is not None
    assert array.dtype == np.uint16 and array.dtype.isnative
    np.testing.assert_array_equal(array, rasterio_read(data))
    np.testing.assert_array_equal(array, pixels)


@pytest.mark.parametrize("dtype", ["uint8", "uint32"])
def test_other_unsigned_widths_keep_their_dtype(dtype):
    pixels = np.arange(400, dtype=dtype).reshape(20, 20) * 3
    array = read_uncompressed(geotiff(pixels))
    assert array is not None and array.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(array, pixels)


@pytest.mark.parametrize(
    ("array", "options"),
    [
        (np.ones((20, 20), np.uint16), {"compress": "deflate"}),
        (np.ones((20, 20), np.uint16), {"compress": "lzw", "predictor": 2}),
        (np.ones((20, 20), np.int16), {}),
        (np.ones((20, 20), np.float32), {}),
        (np.ones((2, 20, 20), np.uint16), {}),
        (np.ones((20, 20), np.uint16), {"BIGTIFF": "YES"}),
    ],
    ids=["deflate", "lzw", "signed", "float", "two-bands", "bigtiff"],
)
def test_layouts_it_does_not_handle_are_left_to_rasterio(array, options):
    assert read_uncompressed(geotiff(array, **options)) is None


@pytest.mark.parametrize(
    "data", [b"", b"not a tiff at all", b"II*\x00\xff\xff\xff\xff", b"MM\x00*\x00\x00\x00\x08\x00"]
)
def test_garbage_is_not_read(data):
    assert read_uncompressed(data) is None


def test_truncated_pixels_are_not_read(pixels):
    data = geotiff(pixels)
    assert read_uncompressed(data[: len(data) // 2]) is None


def real_bands() -> Iterator[tuple[str, bytes]]:
    """Name and bytes of every GeoTIFF band in the real example archive."""
    with tarfile.open(EXAMPLE) as tar:
        for member in tar:
            if member.name.endswith(".tif"):
                yield member.name, tar.extractfile(member).read()


def test_real_bigearthnet_bands_are_read_directly():
    """Every band of the real example patches takes the direct path and equals rasterio's read."""
    checked = 0
    for name, data in real_bands():
        array = read_uncompressed(data)
        assert array is not None, name
        np.testing.assert_array_equal(array, rasterio_read(data))
        checked += 1
    assert checked >= 12


def test_decode_band_falls_back_to_rasterio_for_compressed_bands(pixels):
    np.testing.assert_array_equal(decode_band(geotiff(pixels, compress="deflate"), "P", "B05"), pixels)


def test_decode_band_checks_what_either_reader_returns():
    with pytest.raises(ArchiveError, match=r"P_B01\.tif: dtype uint8, expected uint16"):
        decode_band(geotiff(np.ones((20, 20), np.uint8)), "P", "B01")
    with pytest.raises(ArchiveError, match=r"P_B01\.tif: dtype int16, expected uint16"):
        decode_band(geotiff(np.ones((20, 20), np.int16)), "P", "B01")
    with pytest.raises(ArchiveError, match=r"P_B01\.tif: 2 bands, expected 1"):
        decode_band(geotiff(np.ones((2, 20, 20), np.uint16)), "P", "B01")
    with pytest.raises(ArchiveError, match=r"P_B01\.tif: not a readable GeoTIFF"):
        decode_band(b"II*\x00garbage", "P", "B01")


def test_writer_reproduces_real_bigearthnet_bands_byte_for_byte():
    """Given a real band's pixels, EPSG code and origin, the writer gives back that band's file, every byte."""
    checked = 0
    for name, data in real_bands():
        with rasterio.MemoryFile(data) as memory, memory.open() as dataset:
            pixels, epsg, where = dataset.read(1), dataset.crs.to_epsg(), dataset.transform
        assert write_uncompressed(pixels, epsg, where.c, where.f, where.a) == data, name
        checked += 1
    assert checked == 72  # 6 patches, 12 bands: 120, 60 and 20 pixels wide


@pytest.mark.parametrize("size", [120, 60, 20, 7])
def test_written_band_reads_in_rasterio_with_its_georeference(size):
    pixels = np.random.default_rng(size).integers(0, 2**16, size=(size, size), dtype=np.uint16)
    data = write_uncompressed(pixels, 32633, 500_040.0, 5_100_000.0, 1200 / size)
    with rasterio.MemoryFile(data) as memory, memory.open() as dataset:
        assert dataset.crs.to_epsg() == 32633 and dataset.count == 1 and dataset.nodata is None
        assert dataset.transform == from_origin(500_040.0, 5_100_000.0, 1200 / size, 1200 / size)
        np.testing.assert_array_equal(dataset.read(1), pixels)


def test_writer_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="2-D uint16"):
        write_uncompressed(np.ones((4, 4), np.int16), 32633, 0.0, 0.0, 10.0)
    with pytest.raises(ValueError, match="UTM north"):
        write_uncompressed(np.ones((4, 4), np.uint16), 4326, 0.0, 0.0, 10.0)


@pytest.mark.parametrize(
    ("dtype", "options"),
    [
        ("uint16", {"compress": "deflate", "predictor": 2}),
        ("uint16", {"compress": "deflate", "predictor": 2, "blockysize": 7}),
        ("uint16", {"compress": "deflate"}),
        ("uint8", {"compress": "deflate", "predictor": 2}),
        ("uint32", {"compress": "deflate", "predictor": 2}),
        ("uint16", {"compress": "deflate", "predictor": 2, "ENDIANNESS": "BIG"}),
    ],
    ids=["predictor-2", "strips-of-7", "no-predictor", "uint8", "uint32", "big-endian"],
)
def test_deflated_strips_read_like_rasterio(dtype, options):
    values = np.random.default_rng(1).integers(0, np.iinfo(dtype).max, size=(50, 60), dtype=dtype)
    values[:, 10:20] = 99  # runs, as in a reference map
    data = geotiff(values, **options)
    array = read_deflated(data)
    assert array is not None and array.dtype == np.dtype(dtype) and array.dtype.isnative
    np.testing.assert_array_equal(array, rasterio_read(data))
    np.testing.assert_array_equal(array, values)


def test_real_reference_map_reads_like_rasterio():
    path = next((FIXTURES / "bigearthnet-v2" / "Reference_Maps").rglob("*.tif"))
    np.testing.assert_array_equal(read_deflated(path.read_bytes()), rasterio_read(path.read_bytes()))


@pytest.mark.parametrize(
    "options",
    [{}, {"compress": "lzw"}, {"compress": "deflate", "tiled": True, "blockxsize": 16, "blockysize": 16},
     {"compress": "deflate", "predictor": 3}],
    ids=["uncompressed", "lzw", "deflate-tiles", "float-predictor"],
)  # fmt: skip
def test_other_layouts_are_left_to_rasterio(options):
    values = np.ones((32, 32), np.float32 if options.get("predictor") == 3 else np.uint16)
    assert read_deflated(geotiff(values, **options)) is None


def test_a_known_directory_pointing_to_other_strips_is_read_again():
    """The layout cache recognises a directory by its bytes and by the strip table it points to."""
    band = np.arange(120 * 120, dtype=np.uint16).reshape(120, 120)
    data = write_uncompressed(band, 32633, 500_000.0, 5_000_000.0, 10.0)
    assert np.array_equal(read_uncompressed(data), band)  # the layout is known from here on
    offsets = first_directory(data, "<")[273]
    rows = first_directory(data, "<")[278][0]
    table = struct.pack("<4I", *offsets)
    assert len(offsets) == 4 and data.count(table) == 1
    swapped = data.replace(table, struct.pack("<4I", offsets[1], offsets[0], *offsets[2:]))
    expected = np.concatenate([band[rows : 2 * rows], band[:rows], band[2 * rows :]])
    assert np.array_equal(read_uncompressed(swapped), expected)
    assert np.array_equal(read_uncompressed(data), band)
