"""The one home of the label facts: the 43 CORINE names and the official BigEarthNet-19 conversion.

The table is the official ``label_indices.json`` of the TU Berlin BigEarthNet-S2_19-classes models,
shipped as ``resources/label_indices.json``. Classes keep the official order, never alphabetical.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache

import numpy as np

from benloss.resources import resource


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


class UnknownLabelError(ValueError):
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
