"""Read the finished results a step is given: per-model histories and test metrics, in the catalogue's loss order.

Every function takes the files themselves (a rule's declared inputs), never a folder to search; each file's loss
and seed come from its path (``benloss.layout.model_of``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from benloss.errors import InputError
from benloss.facts.loss_catalog import LOSS_IDS, in_catalog_order
from benloss.layout import model_of


def by_model(paths: Iterable[Path | str]) -> list[tuple[str, int, Path]]:
    """(loss, seed, path) of every file, losses in ``LOSS_IDS`` order then seeds ascending; one file a model."""
    found = []
    for path in map(Path, paths):
        loss, seed = model_of(path)
        if loss not in LOSS_IDS:
            raise InputError(f"{path}: unknown loss {loss!r}; choose from {', '.join(LOSS_IDS)}")
        found.append((loss, seed, path))
    found.sort(key=lambda item: (LOSS_IDS.index(item[0]), item[1]))
    for (loss, seed, first), (loss_b, seed_b, second) in itertools.pairwise(found):
        if (loss, seed) == (loss_b, seed_b):
            raise InputError(f"two files for {loss} seed {seed}: {first} and {second}")
    if not found:
        raise InputError("no result files given")
    return found


def histories(paths: Iterable[Path | str]) -> pd.DataFrame:
    """All rows of the given ``history.csv`` files with ``loss`` and ``seed`` columns."""
    frames = [pd.read_csv(path).assign(loss=loss, seed=seed) for loss, seed, path in by_model(paths)]
    return pd.concat(frames, ignore_index=True)


#: The metric groups of ``metrics.json`` and their column prefix in ``test_metrics``; ``probability`` is null
#: for the losses whose σ(z) is no probability.
METRIC_GROUPS = {
    "own_rule": "own",
    "calibrated": "calibrated",
    "calibrated_per_class": "calibrated_per_class",
    "ranking": "ranking",
    "probability": "probability",
}


def test_metrics(paths: Iterable[Path | str]) -> pd.DataFrame:
    """One row per given ``metrics.json``: loss, seed and every test metric, ``own_*`` and ``calibrated_*``."""
    rows = []
    for loss, seed, path in by_model(paths):
        document = json.loads(path.read_text())
        row = {"loss": loss, "seed": seed}
        for key, prefix in METRIC_GROUPS.items():
            row |= {f"{prefix}_{k}": v for k, v in (document.get(key) or {}).items()}
        rows.append(row)
    return pd.DataFrame(rows)


def per_class(paths: Iterable[Path | str]) -> pd.DataFrame:
    """The given per-class test tables, long form with ``loss`` and ``seed``."""
    frames = [pd.read_csv(path).assign(loss=loss, seed=seed) for loss, seed, path in by_model(paths)]
    return pd.concat(frames, ignore_index=True)


def losses_present(frame: pd.DataFrame) -> list[str]:
    """The losses of ``frame`` in ``LOSS_IDS`` order (the paper's seven in its order, then later additions)."""
    return in_catalog_order(set(frame["loss"]))
