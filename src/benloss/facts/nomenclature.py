"""The one home of the label facts: the 43 CORINE names and the official BigEarthNet-19 conversion.

The table is the official ``label_indices.json`` of the TU Berlin BigEarthNet-S2_19-classes models,
shipped as ``resources/label_indices.json``. Classes keep the official order, never alphabetical.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache

import numpy as np

from benloss.errors import InputError
from benloss.facts.resources import resource


@cache
def _table() -> dict:
    with open(resource("label_indices.json")) as handle:
        return json.load(handle)


@cache
def original_labels() -> tuple[str, ...]:
    """The 43 CORINE level-3 names of BigEarthNet, in official index order."""
    table = _table()["original_labels"]
    return tuple(sorted(table, key=table.__getitem__))


@cache
def classes() -> tuple[str, ...]:
    """The 19 BigEarthNet-19 class names, in official order."""
    table = _table()["BigEarthNet-19_labels"]
    return tuple(sorted(table, key=table.__getitem__))


@cache
def conversion() -> dict[str, str | None]:
    """Map each original name to its BigEarthNet-19 class, or None where the nomenclature drops it."""
    names = original_labels()
    mapping: dict[str, str | None] = dict.fromkeys(names)
    for new_index, old_indices in enumerate(_table()["label_conversion"]):
        for old_index in old_indices:
            mapping[names[old_index]] = classes()[new_index]
    return mapping


class UnknownLabelError(InputError):
    """A label name that is not one of BigEarthNet's 43 CORINE names."""


def to_bigearthnet19(labels: Iterable[str], source: str = "") -> list[str]:
    """Convert original label names to BigEarthNet-19 names, deduplicated and in official order."""
    mapping = conversion()
    unknown = [name for name in labels if name not in mapping]
    if unknown:
        where = f"{source}: " if source else ""
        raise UnknownLabelError(f"{where}unknown BigEarthNet label(s) {unknown}")
    kept = {mapping[name] for name in labels} - {None}
    return [name for name in classes() if name in kept]


def multi_hot(labels: Iterable[str]) -> np.ndarray:
    """A (19,) uint8 multi-hot vector of BigEarthNet-19 names."""
    index = {name: i for i, name in enumerate(classes())}
    vector = np.zeros(len(index), dtype=np.uint8)
    for name in labels:
        vector[index[name]] = 1
    return vector


#: CORINE Land Cover level-3 code of each of the 43 original labels, in official index order.
CORINE_CODES: tuple[int, ...] = (
    111, 112, 121, 122, 123, 124, 131, 132, 133, 141, 142, 211, 212, 213, 221, 222, 223, 231, 241, 242, 243, 244,
    311, 312, 313, 321, 322, 323, 324, 331, 332, 333, 334, 411, 412, 421, 422, 423, 511, 512, 521, 522, 523,
)  # fmt: skip
#: Codes a reference map may hold outside the 43: no data (0), glaciers (335, never in BigEarthNet), no CORINE (999).
CORINE_NO_CLASS_CODES: tuple[int, ...] = (0, 335, 999)
#: Reference-map value of a pixel outside the 19 classes.
NO_CLASS = 255


class UnknownCorineCodeError(InputError):
    """A reference-map value that is no CORINE level-3 code BigEarthNet knows."""


@cache
def corine_to_class_index() -> np.ndarray:
    """Lookup table over uint16 codes: the BigEarthNet-19 class index, ``NO_CLASS``, or -1 for an unknown code."""
    table = np.full(1 << 16, -1, dtype=np.int16)
    table[list(CORINE_NO_CLASS_CODES)] = NO_CLASS
    index = {name: i for i, name in enumerate(classes())}
    for code, name in zip(CORINE_CODES, original_labels(), strict=True):
        new = conversion()[name]
        table[code] = NO_CLASS if new is None else index[new]
    return table


def reference_map_classes(codes: np.ndarray, source: str = "") -> np.ndarray:
    """Convert a map of CORINE codes to uint8 BigEarthNet-19 class indices (``NO_CLASS`` outside the 19)."""
    mapped = corine_to_class_index()[np.asarray(codes, dtype=np.uint16)]
    if (mapped < 0).any():
        unknown = sorted(set(np.asarray(codes)[mapped < 0].tolist()))
        where = f"{source}: " if source else ""
        raise UnknownCorineCodeError(f"{where}unknown CORINE code(s) {unknown[:10]}")
    return mapped.astype(np.uint8)


def reference_map_labels(class_map: np.ndarray) -> list[str]:
    """The BigEarthNet-19 names present in a class-index map, in official order."""
    present = set(np.unique(class_map).tolist()) - {NO_CLASS}
    return [name for i, name in enumerate(classes()) if i in present]
