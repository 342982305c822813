"""Fig. 2 (validation F1 and loss per epoch, every loss on one axis), the class-count chart and the LRP scores."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from benloss.atomic import atomic_outputs
from benloss.losses import LOSS_IDS, loss_info
from benloss.plotting import LOSS_STYLE, save
from benloss.results import histories, losses_present
from benloss.splits import SPLITS

log = logging.getLogger(__name__)


def learning_curves(history: pd.DataFrame) -> plt.Figure:
    """Left: validation F1 (samples) per epoch; right: validation loss. Bands are ± std over seeds."""
    figure, (f1_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for loss in losses_present(history):
        runs = history[history["loss"] == loss]
        style = LOSS_STYLE[loss]
        label = loss_info(loss).abbreviation
        for axis, column in ((f1_axis, "f1_samples"), (loss_axis, "val_loss")):
            stats = runs.groupby("epoch")[column].agg(["mean", "std"]).reset_index()
            axis.plot(stats["epoch"], stats["mean"], label=label, markersize=4, linewidth=1.6, **style)
            if runs["seed"].nunique() > 1:
                axis.fill_between(stats["epoch"], stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                                  color=style["color"], alpha=0.15, linewidth=0)  # fmt: skip
    f1_axis.set(xlabel="epoch", ylabel="validation F1 (sample-averaged)", title="Validation F1 per epoch")
    f1_axis.set_ylim(bottom=0)
    loss_axis.set(xlabel="epoch", ylabel="validation loss (each loss on its own scale)", title="Validation loss")
    loss_axis.set_yscale("symlog", linthresh=0.1)
    for axis in (f1_axis, loss_axis):
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    f1_axis.legend(title="loss", ncol=2, fontsize=9)
    return figure


def class_count_chart(counts: pd.DataFrame) -> plt.Figure:
    """Horizontal stacked bars of patches per class and split, log scale so the long tail shows."""
    counts = counts.set_index("class")
    figure, axis = plt.subplots(figsize=(9, 6.5), constrained_layout=True)
    left = np.zeros(len(counts))
    colours = {"train": "#0072B2", "val": "#E69F00", "test": "#009E73"}
    positions = np.arange(len(counts))[::-1]
    for split in SPLITS:
        axis.barh(positions, counts[split], left=left, color=colours[split], label=split, height=0.75)
        left += counts[split].to_numpy()
    axis.set_yticks(positions, [name if len(name) < 45 else name[:42] + "…" for name in counts.index], fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("patches (log scale)")
    ratio = counts["train"].max() / max(counts["train"].min(), 1)
    axis.set_title(f"Patches per class; most frequent / rarest in train = {ratio:.0f}×")
    axis.legend()
    axis.grid(axis="x", alpha=0.3)
    return figure


def lrp_score_chart(summary: pd.DataFrame) -> plt.Figure:
    """LRP scores per class (rows, ``all`` on top) and loss (colours) with 95 % intervals: left the share of
    positive relevance inside the class region, right the pointing game; grey bars mark the region's share of
    the patch, what an explanation blind to the region scores on average. Empty summary: a note saying so."""
    if summary.empty:
        figure, axis = plt.subplots(figsize=(6, 1.5))
        axis.text(0.5, 0.5, "No reference maps for the test split: explanations not scored.", ha="center", va="center")
        axis.set_axis_off()
        return figure
    losses = list(summary["loss"].drop_duplicates())
    names = list(summary["class"].drop_duplicates())
    names = [*[n for n in names if n != "all"][::-1], "all"]
    ids = {loss_info(loss).abbreviation: loss for loss in LOSS_IDS}
    figure, axes = plt.subplots(1, 2, figsize=(12, 1.0 + 0.32 * len(names) * max(1, len(losses)) ** 0.5),
                                sharey=True, constrained_layout=True)  # fmt: skip
    offsets = np.linspace(-0.3, 0.3, len(losses)) if len(losses) > 1 else np.zeros(1)
    chance = summary.groupby("class")["region_share"].mean()
    positions = np.arange(len(names))
    for axis, column, title in ((axes[0], "relevance_mass", "Positive relevance inside the class region"),
                                (axes[1], "pointing_game", "Pointing game: most relevant pixel inside")):  # fmt: skip
        axis.barh(positions, [chance[n] for n in names], height=0.8, color="0.88", label="region share of patch")
        for offset, loss in zip(offsets, losses, strict=True):
            rows = summary[summary["loss"] == loss].set_index("class").reindex(names)
            error = np.vstack([rows[column] - rows[f"{column}_low"], rows[f"{column}_high"] - rows[column]])
            style = LOSS_STYLE.get(ids.get(loss, ""), {"color": "0.3", "marker": "o"})
            axis.errorbar(rows[column], positions + offset, xerr=np.nan_to_num(error), linestyle="none",
                          markersize=4, capsize=0, elinewidth=1, label=loss, **style)  # fmt: skip
        axis.set(xlim=(0, 1), title=title, xlabel="share of explanations" if column == "pointing_game" else "share")
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(positions, [n if len(n) < 40 else n[:37] + "…" for n in names], fontsize=7)
    axes[1].legend(fontsize=7, loc="lower right")
    return figure


def write_figures(results: Path, class_counts: Path, outdir: Path) -> None:
    """Write ``f1_curves.png/.pdf`` and ``class_counts.png`` into ``outdir``."""
    outdir = Path(outdir)
    with atomic_outputs(outdir / "f1_curves.png", outdir / "f1_curves.pdf", outdir / "class_counts.png") as (
        png,
        pdf,
        counts_png,
    ):
        save(learning_curves(histories(Path(results))), png, pdf)
        save(class_count_chart(pd.read_csv(class_counts)), counts_png)
    log.info("figures written to %s", outdir)
