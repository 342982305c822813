"""The label stage: BigEarthNet-19 labels, splits and exclusions for every patch, as the source gives them."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from benloss.atomic import atomic_outputs
from benloss.data.diskspace import require_free_space
from benloss.data.sources import Source
from benloss.data.sources.bigearthnet_v1 import BigEarthNetV1
from benloss.facts.nomenclature import classes
from benloss.facts.splits import SPLITS
from benloss.layout import LABEL_FILES

log = logging.getLogger(__name__)

#: A generous bound on the label table's bytes per listed patch (name, split and labels; parquet stores less).
TABLE_BYTES_PER_PATCH = 1024


def class_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Number of patches per class (rows, official order) and split (columns)."""
    counts = pd.DataFrame(0, index=pd.Index(classes(), name="class"), columns=list(SPLITS), dtype=int)
    for split in SPLITS:
        tally = Counter(name for labels in table.loc[table["split"] == split, "labels"] for name in labels)
        counts[split] = [tally[name] for name in classes()]
    counts["total"] = counts[list(SPLITS)].sum(axis=1)
    return counts


def label_files(outdir: Path) -> tuple[Path, Path, Path]:
    """The label stage's outputs in ``outdir``: the table, the class counts and the summary."""
    outdir = Path(outdir)
    return tuple(outdir / LABEL_FILES[role] for role in ("table", "counts", "summary"))


def require_table_space(source: Source, outdir: Path) -> None:
    """Stop before reading the archive if ``outdir``'s disk cannot hold the label table."""
    require_free_space(outdir, TABLE_BYTES_PER_PATCH * source.listed(), "the label table and its summaries")


def write_label_files(source: Source, table: pd.DataFrame, summary: dict, paths: tuple[Path, Path, Path]) -> dict:
    """Write the table, its class counts and the summary (headed by the source's name) to ``paths``."""
    parquet, counts, summary_path = paths
    summary = {"dataset": source.dataset, "version": source.version, "description": source.describe(), **summary}
    table.assign(split=table["split"].astype(str)).to_parquet(parquet, index=False)
    class_counts(table).to_csv(counts)
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    log.info("kept %s, dropped %s", summary["kept"], summary["dropped"])
    return summary


def write_labels(source: Source, outdir: Path) -> dict:
    """Write ``patches.parquet``, ``class_counts.csv`` and ``summary.json`` of ``source`` into ``outdir``."""
    require_table_space(source, outdir)
    table, summary = source.label_table()
    with atomic_outputs(*label_files(outdir)) as paths:
        return write_label_files(source, table, summary, paths)


def run_labels(archive: Path, lists: Mapping[str, Path], outdir: Path) -> dict:
    """The label stage for a v1.0 archive and its five lists (labels only: no band statistics needed)."""
    return write_labels(BigEarthNetV1(Path(archive), dict(lists), band_statistics=None), outdir)


def read_label_table(path: Path) -> pd.DataFrame:
    """Read ``patches.parquet`` with labels as Python lists."""
    table = pd.read_parquet(path)
    table["labels"] = table["labels"].map(list)
    return table
