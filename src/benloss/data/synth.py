"""The demo archive: synthetic patches in exactly BigEarthNet-S2 v1.0's format, whose pixels carry their labels.

Every original (CORINE) label of a patch paints one region of the patch with a spectral signature of its
own across the twelve bands, plus texture and noise, so a CNN can learn the labels and an explanation
can be checked against where each class really is. Patches are cut from a few synthetic acquisitions (scenes),
named by their scene and grid position as the real ones are, and neighbours within a scene share land cover
(smooth label preferences over the grid) and illumination, so that test patches are spatially correlated as
BigEarthNet's are. The region maps stay beside the archive
(``masks.npz``), never inside it, and become a reference-map archive like BigEarthNet v2.0's. The demo
comes in v1.0 layout or, converted by ``benloss.data.sources.demo``, in v2.0 layout.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import tarfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from benloss.atomic import atomic_outputs
from benloss.data.geotiff import write_uncompressed
from benloss.data.sources.demo import finish_demo
from benloss.data.streams import create_gzip
from benloss.facts.bands import BAND_GROUPS, BANDS, PATCH_PIXELS, PATCH_SIZE_M, BandStatistics, official_band_order
from benloss.facts.nomenclature import classes, conversion, original_labels
from benloss.facts.splits import list_paths, write_list
from benloss.layout import DEMO_FILES, DEMO_MASKS, DEMO_V1_ARCHIVE

log = logging.getLogger(__name__)

ARCHIVE_ROOT = "BigEarthNet-v1.0"

#: Archetypal reflectances (x 10000) in official band order B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12.
_ARCHETYPES = {
    "water": (600, 520, 460, 300, 260, 210, 190, 160, 140, 110, 80, 60),
    "forest": (300, 350, 550, 350, 900, 2200, 2700, 2900, 3000, 3000, 1500, 700),
    "crop": (420, 520, 820, 720, 1200, 2000, 2300, 2500, 2600, 2500, 2200, 1400),
    "urban": (1200, 1300, 1350, 1400, 1500, 1600, 1650, 1700, 1750, 1700, 1900, 1700),
    "bare": (1500, 1800, 2100, 2400, 2600, 2800, 2900, 3000, 3050, 3000, 3600, 3000),
    "wetland": (450, 450, 600, 500, 800, 1300, 1500, 1600, 1650, 1600, 900, 500),
    "grass": (450, 550, 850, 750, 1300, 2100, 2400, 2600, 2700, 2600, 2400, 1500),
}
_CLASS_ARCHETYPE = (
    "urban", "urban", "crop", "crop", "grass", "crop", "crop", "forest", "forest", "forest",
    "forest", "grass", "grass", "forest", "bare", "wetland", "wetland", "water", "water",
)  # fmt: skip
#: Relative frequency of the 43 original labels, roughly following BigEarthNet's long tail.
_FREQUENT = ("Mixed forest", "Coniferous forest", "Non-irrigated arable land", "Transitional woodland/shrub",
             "Broad-leaved forest", "Land principally occupied by agriculture, with significant areas of natural "
             "vegetation", "Complex cultivation patterns", "Pastures", "Water bodies", "Sea and ocean",
             "Discontinuous urban fabric")  # fmt: skip
_OFFICIAL_BAND_ORDER = tuple(sorted(BANDS, key=official_band_order))


@dataclass(frozen=True)
class SynthConfig:
    """Size and randomness of a demo archive."""

    patches: int = 1000
    seed: int = 0
    snow_fraction: float = 0.03
    cloud_fraction: float = 0.02
    dropped_only_fraction: float = 0.02
    split_fractions: tuple[float, float, float] = (0.52, 0.24, 0.24)
    format: str = "v1"
    scenes: int = 20


#: Strength of a scene's land-cover preference: a label's weight at a position is multiplied by exp(β · field).
PREFERENCE_STRENGTH = 2.0


@dataclass(frozen=True)
class Scene:
    """One synthetic Sentinel-2 acquisition: its time, projection, illumination and land-cover preferences."""

    satellite: str
    when: datetime
    clock: str  # the time in the name (some hours lose their leading zero, as in the real archive)
    epsg: int
    origin: tuple[float, float]  # upper-left corner of grid position (0, 0), metres
    illumination: float
    offset: tuple[int, int]  # grid position of the window's first cell
    preference: np.ndarray  # (43, side, side) smooth fields over the window's grid positions
    cells: list[tuple[int, int]]  # free grid positions, in the order patches take them

    def name(self, i: int, j: int) -> str:
        return f"{self.satellite}_MSIL2A_{self.when:%Y%m%d}T{self.clock}_{i}_{j}"

    def label_weights(self, weights: np.ndarray, i: int, j: int) -> np.ndarray:
        """The archive-wide label weights (43,) at grid position (i, j), scaled by the scene's preferences."""
        return weights * np.exp(PREFERENCE_STRENGTH * self.preference[:, i - self.offset[0], j - self.offset[1]])


def make_scene(rng: np.random.Generator, side: int) -> Scene:
    """A scene whose patches lie on a ``side`` × ``side`` window of grid positions 0 to 89."""
    when = datetime(2017, 6, 1) + timedelta(
        days=int(rng.integers(0, 365)), seconds=int(rng.integers(8 * 3600, 12 * 3600))
    )
    clock = f"{when.hour}{when:%M%S}" if when.hour < 10 and rng.random() < 0.5 else f"{when:%H%M%S}"
    satellite = "S2A" if rng.random() < 0.5 else "S2B"
    offset = (int(rng.integers(0, 90 - side + 1)), int(rng.integers(0, 90 - side + 1)))
    cells = [(offset[0] + c // side, offset[1] + c % side) for c in rng.permutation(side * side).tolist()]
    origin = (float(rng.integers(300, 600) * PATCH_SIZE_M), float(rng.integers(4200, 6000) * PATCH_SIZE_M))
    fields = _smooth_fields(rng, len(original_labels()), side, max(2, side // 4))
    illumination = float(rng.uniform(0.85, 1.15))
    return Scene(satellite, when, clock, _utm_epsg(rng), origin, illumination, offset, fields, cells)


def label_weights() -> np.ndarray:
    """Sampling weight of each original label: a Zipf-like tail, most frequent labels first."""
    names = original_labels()
    order = list(_FREQUENT) + [n for n in names if n not in _FREQUENT]
    rank = {name: r for r, name in enumerate(order)}
    return np.array([1.0 / (rank[name] + 1) ** 0.9 for name in names])


def signatures() -> np.ndarray:
    """(43, 12) reflectance signature of each original label, bands in encoded order.

    Labels sharing a BigEarthNet-19 class share its signature, with a small label-specific variation;
    labels the 19-class nomenclature drops get signatures of their own. Fixed for every seed.
    """
    rng = np.random.default_rng(20200926)
    class_index = {name: i for i, name in enumerate(classes())}
    per_class = np.array(
        [np.array(_ARCHETYPES[archetype]) * rng.uniform(0.4, 1.6, size=12) for archetype in _CLASS_ARCHETYPE]
    )
    encoded = [_OFFICIAL_BAND_ORDER.index(b) for b in BANDS]
    result = []
    for name in original_labels():
        new = conversion()[name]
        if new is None:
            base = np.array(_ARCHETYPES[rng.choice(["urban", "bare"])]) * rng.uniform(0.6, 1.4, size=12)
        else:
            base = per_class[class_index[new]] * rng.uniform(0.95, 1.05, size=12)
        result.append(base[encoded])
    return np.array(result)


@functools.cache
def _zoom_matrix(size: int, cells: int) -> np.ndarray:
    """(size, cells) matrix ``Z`` with ``Z @ C @ Z.T`` equal to ``ndimage.zoom(C, size / cells, order=3)``.

    Cubic spline zooming is linear and separable, so its columns are the zoomed unit vectors; two small
    matrix products then replace a spline evaluation per pixel (15x faster, equal to 1e-14).
    """
    unit = np.eye(cells)
    return np.stack([ndimage.zoom(unit[j], size / cells, order=3, mode="reflect")[:size] for j in range(cells)], 1)


def _smooth_fields(rng: np.random.Generator, count: int, size: int = 120, cells: int = 6) -> np.ndarray:
    """``count`` smooth random (size, size) fields: cubic zooms of standard normal (cells, cells) grids."""
    zoom = _zoom_matrix(size, cells)
    return zoom @ rng.standard_normal((count, cells, cells)) @ zoom.T


def _smooth_field(rng: np.random.Generator, size: int = 120, cells: int = 6) -> np.ndarray:
    return _smooth_fields(rng, 1, size, cells)[0]


def paint_regions(rng: np.random.Generator, n_labels: int, size: int = 120, min_share: float = 0.08) -> np.ndarray:
    """A (size, size) map assigning every pixel to one of ``n_labels`` smooth, blob-shaped regions."""
    for _ in range(50):
        fields = _smooth_fields(rng, n_labels, size)
        regions = fields.argmax(axis=0)
        shares = np.bincount(regions.ravel(), minlength=n_labels) / regions.size
        if shares.min() >= min_share:
            break
    return regions.astype(np.uint8)


def render_patch(
    rng: np.random.Generator, region_labels: np.ndarray, spectra: np.ndarray, scene_illumination: float = 1.0
) -> dict[str, np.ndarray]:
    """Render twelve uint16 bands from a 10 m map of original label indices.

    Each band is its labels' reflectance times a smooth texture and the illumination (the scene's, within 5 %),
    averaged down to the band's resolution, with 3 % multiplicative and 15-unit additive Gaussian noise.
    """
    illumination = scene_illumination * rng.uniform(0.95, 1.05)
    texture = 1 + 0.05 * _smooth_field(rng, 120, 15)
    signal = spectra.T[:, region_labels] * texture * illumination
    # One draw, band by band: each band's multiplicative then its additive noise (as two calls would give).
    noise = rng.standard_normal(2 * PATCH_PIXELS)
    bands: dict[str, np.ndarray] = {}
    start, first = 0, 0
    for group in BAND_GROUPS:
        count, size, factor = len(group.bands), group.size, 120 // group.size
        fine = signal[first : first + count]
        if factor > 1:
            fine = fine.reshape(count, size, factor, size, factor).mean(axis=(2, 4))
        draws = noise[start : start + 2 * count * size**2].reshape(count, 2, size, size)
        noisy = fine * (1 + 0.03 * draws[:, 0]) + 15 * draws[:, 1]
        pixels = np.clip(np.rint(noisy, out=noisy), 1, 20000, out=noisy).astype(np.uint16)
        bands.update(zip(group.bands, pixels, strict=True))
        start, first = start + 2 * count * size**2, first + count
    return bands


def _utm_epsg(rng: np.random.Generator) -> int:
    return 32600 + int(rng.integers(29, 36))


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)  # a whole second, as in the real archive (a fraction would add a PAX header)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _sample_labels(rng: np.random.Generator, config: SynthConfig, weights: np.ndarray) -> list[int]:
    """One to four original labels drawn by ``weights`` (or, rarely, only labels that BigEarthNet-19 drops)."""
    names = original_labels()
    dropped = [i for i, name in enumerate(names) if conversion()[name] is None]
    kept = np.array([i for i in range(len(names)) if i not in dropped])
    if rng.random() < config.dropped_only_fraction:
        return sorted(rng.choice(dropped, size=int(rng.integers(1, 3)), replace=False).tolist())
    k = int(rng.choice([1, 2, 3, 4], p=[0.4, 0.35, 0.18, 0.07]))
    p = weights[kept] / weights[kept].sum()
    return sorted(rng.choice(kept, size=k, replace=False, p=p).tolist())


def make_demo_archive(outdir: Path, config: SynthConfig) -> dict:
    """Write the demo archive, its reference maps and region masks, and its label files into ``outdir``.

    Files, v1 format: ``BigEarthNet-demo.tar.gz``,
    ``Reference_Maps.tar.zst``, ``band_statistics.csv`` (training split) and ``lists/`` with ``train.csv
    val.csv test.csv patches_with_seasonal_snow.csv patches_with_cloud_and_shadow.csv``; v2 format:
    ``BigEarthNet-S2.tar.zst``, ``Reference_Maps.tar.zst`` and the two metadata parquet files. Both:
    ``masks.npz``.
    """
    outdir = Path(outdir)
    rng = np.random.default_rng(config.seed)
    # at least twice the cells the patches need, in windows of at most 90 × 90 positions
    n_scenes = max(config.scenes, int(np.ceil(2 * config.patches / 90**2)))
    side = min(90, int(np.ceil(np.sqrt(2 * config.patches / n_scenes))))
    scenes = [make_scene(rng, side) for _ in range(n_scenes)]
    spectra = signatures()
    weights = label_weights()
    names_43 = original_labels()
    masks: dict[str, np.ndarray] = {}
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": [], "snow": [], "cloud": []}
    sums = np.zeros(len(BANDS))
    squares = np.zeros(len(BANDS))
    pixels = np.zeros(len(BANDS))
    with atomic_outputs(outdir) as (tmp,):
        (tmp / "lists").mkdir(parents=True)
        with create_gzip(tmp / DEMO_V1_ARCHIVE) as packed, tarfile.open(fileobj=packed, mode="w") as tar:
            for _ in tqdm(range(config.patches), desc="synth", unit=" patches", mininterval=2):
                scene = scenes[int(rng.integers(len(scenes)))]
                if not scene.cells:
                    scene = next(other for other in scenes if other.cells)
                i, j = scene.cells.pop()
                name = scene.name(i, j)
                label_ids = _sample_labels(rng, config, scene.label_weights(weights, i, j))
                regions = paint_regions(rng, len(label_ids))
                region_labels = np.asarray(label_ids)[regions]
                bands = render_patch(rng, region_labels, spectra, scene.illumination)
                destiny = rng.random()
                if destiny < config.snow_fraction:
                    for band in bands.values():
                        band[:] = np.minimum(band.astype(np.uint32) + 6000, 20000).astype(np.uint16)
                    lists["snow"].append(name)
                elif destiny < config.snow_fraction + config.cloud_fraction:
                    cloud = _smooth_field(rng) > 0.3
                    for band in bands.values():
                        zoomed = cloud[:: 120 // band.shape[0], :: 120 // band.shape[0]]
                        band[zoomed] = 8000
                    lists["cloud"].append(name)
                elif any(conversion()[names_43[i]] for i in label_ids):
                    split = str(rng.choice(["train", "val", "test"], p=config.split_fractions))
                    lists[split].append(name)
                    if split == "train":
                        for b, band in enumerate(BANDS):
                            values = bands[band].astype(np.float64)
                            sums[b] += values.sum()
                            squares[b] += (values**2).sum()
                            pixels[b] += values.size
                masks[name] = region_labels.astype(np.uint8)
                _write_patch(tar, name, scene, (i, j), label_ids, bands)
        mean = sums / np.maximum(pixels, 1)
        std = np.sqrt(np.maximum(squares / np.maximum(pixels, 1) - mean**2, 1.0))
        BandStatistics(
            dict(zip(BANDS, mean.tolist(), strict=False)), dict(zip(BANDS, std.tolist(), strict=False))
        ).write_csv(tmp / DEMO_FILES["v1"]["band_statistics"])
        for key, path in list_paths(tmp / "lists").items():
            write_list(path, lists[key])
        finish_demo(tmp, config.format, masks, list_paths(tmp / "lists"))
        np.savez_compressed(tmp / DEMO_MASKS, **masks)
    summary = {key: len(value) for key, value in lists.items()}
    log.info("demo archive with %d patches: %s", config.patches, summary)
    return summary


def _write_patch(
    tar: tarfile.TarFile, name: str, scene: Scene, position: tuple[int, int], label_ids: list[int],
    bands: dict[str, np.ndarray],
) -> None:  # fmt: skip
    when, epsg = scene.when, scene.epsg
    ulx = scene.origin[0] + position[1] * PATCH_SIZE_M
    uly = scene.origin[1] - position[0] * PATCH_SIZE_M
    folder = f"{ARCHIVE_ROOT}/{name}"
    mtime = when.timestamp()
    for band in _OFFICIAL_BAND_ORDER:
        tif = write_uncompressed(bands[band], epsg, ulx, uly, PATCH_SIZE_M / bands[band].shape[0])
        _add(tar, f"{folder}/{name}_{band}.tif", tif, mtime)
    metadata = {
        "labels": [original_labels()[i] for i in label_ids],
        "coordinates": {"ulx": ulx, "uly": uly, "lrx": ulx + PATCH_SIZE_M, "lry": uly - PATCH_SIZE_M},
        "projection": _wkt(epsg),
        "tile_source": f"{name[:3]}_MSIL1C_{when:%Y%m%dT%H%M%S}_N0205_R022_T{epsg - 32600}UNA_{when:%Y%m%dT%H%M%S}"
        ".SAFE",
        "acquisition_date": f"{when:%Y-%m-%d %H:%M:%S}",
    }
    _add(tar, f"{folder}/{name}_labels_metadata.json", json.dumps(metadata).encode(), mtime)


@functools.cache
def _wkt(epsg: int) -> str:
    from rasterio.crs import CRS

    return CRS.from_epsg(epsg).to_wkt()


def read_masks(path: Path) -> dict[str, np.ndarray]:
    """The demo's region maps: per patch a (120, 120) array of original label indices."""
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


def class_region(mask: np.ndarray, class_name: str) -> np.ndarray:
    """Boolean (120, 120) map of the pixels painted by labels that convert to ``class_name``."""
    members = [i for i, name in enumerate(original_labels()) if conversion()[name] == class_name]
    return np.isin(mask, members)
