"""The demo's reference maps and its v2.0 layout, derived from the demo archive that ``benloss.data.synth`` writes.

The demo archive is made in v1.0 layout with its region maps (``masks.npz``, original-label indices per
pixel). Here those maps become a reference-map archive exactly like v2.0's (CORINE codes, DEFLATE), for
either layout; for the v2.0 layout the patches are renamed and regrouped by tile, their labels and splits
move into ``metadata.parquet`` and the excluded ones into the snow/cloud parquet, as in reBEN.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from benloss.data.archive import REFERENCE_MAP, V1_PATCH_FILES, iter_patches
from benloss.data.sources.bigearthnet_v2 import EXCLUSIONS, METADATA
from benloss.errors import InputError
from benloss.facts.bands import PATCH_SIZE_M
from benloss.facts.nomenclature import CORINE_CODES, to_bigearthnet19
from benloss.facts.splits import read_list
from benloss.layout import DEMO_FILES, DEMO_V1_ARCHIVE, V2_FILES

FORMATS = ("v1", "v2")
V1_ARCHIVE = DEMO_V1_ARCHIVE
V2_ARCHIVE = V2_FILES["s2"]
MAPS_ARCHIVE = V2_FILES["reference_maps"]
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}


def v2_name(v1_name: str) -> str:
    """A v2.0-style patch name: ``<sat>_MSIL2A_<date>T<HHMMSS>_N9999_R022_T33UUP_<col>_<row>``."""
    satellite, product, when, column, row = v1_name.split("_")
    date, clock = when.split("T")
    return f"{satellite}_{product}_{date}T{clock:0>6}_N9999_R022_T33UUP_{int(column):02d}_{int(row):02d}"


def tile_of(patch: str) -> str:
    """The tile folder of a patch: its name without the trailing column and row."""
    return patch.rsplit("_", 2)[0]


def finish_demo(folder: Path, layout: str, masks: dict[str, np.ndarray], lists: Mapping[str, Path]) -> None:
    """Write the reference-map archive into ``folder`` and, for ``layout`` v2, convert the demo to v2.0.

    ``masks`` (original-label index maps) is re-keyed in place to the v2.0 names for layout v2.
    """
    folder = Path(folder)
    if layout not in FORMATS:
        raise InputError(f"unknown demo format {layout!r}; expected v1 or v2")
    v2 = layout == "v2"
    rename = v2_name if v2 else str
    rows: list[dict] = []
    with ExitStack() as stack:
        maps = stack.enter_context(_zstd_tar(folder / MAPS_ARCHIVE))
        bands = stack.enter_context(_zstd_tar(folder / V2_ARCHIVE)) if v2 else None
        for patch in iter_patches(folder / V1_ARCHIVE, read_bands=v2, expected=V1_PATCH_FILES):
            name = rename(patch.name)
            document = json.loads(patch.metadata)
            prefix = f"{tile_of(name)}/{name}/{name}"
            codes = np.asarray(CORINE_CODES, dtype=np.uint16)[masks[patch.name]]
            _add(maps, f"Reference_Maps/{prefix}_{REFERENCE_MAP}.tif", _map_tiff(codes, document))
            if bands is not None:
                for band, data in patch.bands.items():
                    _add(bands, f"BigEarthNet-S2/{prefix}_{band}.tif", data)
                rows.append({"patch_id": name, "labels": to_bigearthnet19(document["labels"]), "s2v1_name": patch.name})
    if v2:
        _write_metadata(folder, rows, lists)
        for name in list(masks):
            masks[v2_name(name)] = masks.pop(name)
        (folder / V1_ARCHIVE).unlink()
        (folder / DEMO_FILES["v1"]["band_statistics"]).unlink()
        shutil.rmtree(folder / "lists")


def _write_metadata(folder: Path, rows: list[dict], lists: Mapping[str, Path]) -> None:
    table = pd.DataFrame(rows).set_index("s2v1_name", drop=False)
    split = pd.Series(None, index=table.index, dtype=object)
    for key, value in SPLIT_NAMES.items():
        split[read_list(lists[key])] = value
    snow = table.index.isin(read_list(lists["snow"]))
    cloud = table.index.isin(read_list(lists["cloud"])) & ~snow
    table = table.assign(
        split=split.fillna("train").astype("str"),  # a string column even where no patch is excluded
        country="Demo",
        s1_name="",
        contains_seasonal_snow=snow,
        contains_cloud_or_shadow=cloud,
    )
    columns = ["patch_id", "labels", "split", "country", "s1_name", "s2v1_name"]
    columns += ["contains_seasonal_snow", "contains_cloud_or_shadow"]
    kept = split.notna() & ~snow & ~cloud
    table[kept][columns].to_parquet(folder / METADATA, index=False)
    table[snow | cloud][columns].to_parquet(folder / EXCLUSIONS, index=False)


@contextmanager
def _zstd_tar(path: Path) -> Iterator[tarfile.TarFile]:
    import zstandard

    with (
        open(path, "wb") as raw,
        zstandard.ZstdCompressor(level=3).stream_writer(raw) as stream,
        tarfile.open(fileobj=stream, mode="w|") as tar,
    ):
        yield tar


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _map_tiff(codes: np.ndarray, document: dict) -> bytes:
    """A reference map as v2.0 stores it: uint16 CORINE codes, DEFLATE with predictor 2, nodata 0."""
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    pixel = PATCH_SIZE_M / codes.shape[0]
    corner = document["coordinates"]
    profile = {
        "driver": "GTiff", "height": codes.shape[0], "width": codes.shape[1], "count": 1, "dtype": "uint16",
        "crs": document["projection"], "transform": from_origin(corner["ulx"], corner["uly"], pixel, pixel),
        "nodata": 0, "compress": "deflate", "predictor": 2,
    }  # fmt: skip
    with MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(codes, 1)
        return memory.read()
