"""An architecture's landscapes summarised: Fig. 3 (surfaces and trajectories) and its 1D slices from each loss's
lowest seed, and the measured convexity per loss, mean over seeds, for Table 2 (``tables/landscape.csv``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from benloss.atomic import atomic_outputs
from benloss.errors import InputError
from benloss.evaluation.results import by_model
from benloss.facts.loss_catalog import loss_info
from benloss.landscape.figure import landscape_figure, slices_figure
from benloss.landscape.landscape import Landscape, read_landscape
from benloss.layout import LANDSCAPE_SUMMARY_FILES
from benloss.report.plotting import save
from benloss.report.tables import MEASURED_CONVEXITY

log = logging.getLogger(__name__)

#: The measured convexity per loss: Table 2's columns and the two eigenvalues behind the ratio.
LANDSCAPE_COLUMNS = (*MEASURED_CONVEXITY, "lambda_min", "lambda_max")


def landscape_table(landscapes: dict[tuple[str, int], Landscape]) -> pd.DataFrame:
    """Per loss (abbreviated, catalogue order): LANDSCAPE_COLUMNS as the mean over its seeds, the trajectory's
    explained variance and the seeds counted."""
    rows = []
    for (loss, seed), landscape in landscapes.items():
        summary = landscape.summary
        rows.append({"loss": loss, "seed": seed, **{c: summary[c] for c in LANDSCAPE_COLUMNS},
                     "explained_pc1": summary["explained"][0], "explained_pc2": summary["explained"][1]})  # fmt: skip
    frame = pd.DataFrame(rows)
    table = frame.groupby("loss", sort=False).agg(
        **{c: (c, "mean") for c in (*LANDSCAPE_COLUMNS, "explained_pc1", "explained_pc2")}, seeds=("seed", "count")
    )
    table.index = [loss_info(loss).abbreviation for loss in table.index]
    table.index.name = "loss"
    return table


def write_landscape_summary(arrays: Sequence[Path], summaries: Sequence[Path], out: Path) -> pd.DataFrame:
    """Read every given model's ``landscape.npz`` and ``landscape.json`` (one pair per model, matched by path) and
    write LANDSCAPE_SUMMARY_FILES under ``out`` (the architecture's folder)."""
    summary_of = {(loss, seed): path for loss, seed, path in by_model(summaries)}
    landscapes = {}
    for loss, seed, path in by_model(arrays):
        if (loss, seed) not in summary_of:
            raise InputError(f"{path}: no landscape.json given for {loss} seed {seed}")
        landscapes[loss, seed] = read_landscape(path, summary_of[loss, seed])
    table = landscape_table(landscapes)
    lowest = {}
    for (loss, _), landscape in landscapes.items():  # by_model's order: seeds ascending within a loss
        lowest.setdefault(loss, landscape)
    out = Path(out)
    paths = [out / LANDSCAPE_SUMMARY_FILES[role] for role in ("figure", "figure_pdf", "slices", "table")]
    with atomic_outputs(*paths) as (png, pdf, slices_png, table_csv):
        save(landscape_figure(lowest), png, pdf)
        save(slices_figure(lowest), slices_png)
        table.to_csv(table_csv)
    log.info("landscapes of %d models summarised in %s", len(landscapes), out)
    return table
