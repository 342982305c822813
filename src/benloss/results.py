"""Read a run's finished results: per-model histories and test metrics, losses in ``LOSS_IDS`` order."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from benloss.losses import LOSS_IDS

_SEED = re.compile(r"seed(\d+)$")


def _runs(root: Path, filename: str) -> list[tuple[str, int, Path]]:
    found = []
    for loss in LOSS_IDS:
        for folder in sorted((root / loss).glob("seed*")):
            match = _SEED.search(folder.name)
            if match and (folder / filename).exists():
                found.append((loss, int(match.group(1)), folder / filename))
    return found


def histories(results: Path) -> pd.DataFrame:
    """All ``history.csv`` rows with ``loss`` and ``seed`` columns."""
    frames = [
        pd.read_csv(path).assign(loss=loss, seed=seed) for loss, seed, path in _runs(results / "models", "history.csv")
    ]
    if not frames:
        raise FileNotFoundError(f"no history.csv under {results / 'models'}")
    return pd.concat(frames, ignore_index=True)


def test_metrics(results: Path) -> pd.DataFrame:
    """One row per model: loss, seed and every test metric, ``own_*`` and ``calibrated_*``."""
    rows = []
    for loss, seed, path in _runs(results / "eval", "metrics.json"):
        document = json.loads(path.read_text())
        row = {"loss": loss, "seed": seed}
        row |= {f"own_{k}": v for k, v in document["own_rule"].items()}
        row |= {f"calibrated_{k}": v for k, v in document["calibrated"].items()}
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no metrics.json under {results / 'eval'}")
    return pd.DataFrame(rows)


def per_class(results: Path) -> pd.DataFrame:
    """Per-class test tables of every model, long form with ``loss`` and ``seed``."""
    frames = [
        pd.read_csv(path).assign(loss=loss, seed=seed) for loss, seed, path in _runs(results / "eval", "per_class.csv")
    ]
    return pd.concat(frames, ignore_index=True)


def losses_present(frame: pd.DataFrame) -> list[str]:
    """The losses of ``frame`` in ``LOSS_IDS`` order (the paper's seven in its order, then later additions)."""
    return [loss for loss in LOSS_IDS if loss in set(frame["loss"])]


def evaluated_runs(results: Path) -> list[tuple[str, int, Path]]:
    """(loss, seed, folder) of every evaluation that saved its test scores, in the paper's loss order."""
    return [(loss, seed, path.parent) for loss, seed, path in _runs(Path(results) / "eval", "test_scores.npy")]
