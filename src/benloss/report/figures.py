"""Fig. 2 (validation F1, mAP and loss per epoch, every loss on one axis), F1 per training second, the class-count
chart, the matrix of pairwise F1 differences, precision–recall curves, reliability diagrams and the LRP scores."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from benloss.atomic import atomic_outputs
from benloss.evaluation.results import by_model, histories, losses_present
from benloss.facts.loss_catalog import LOSS_IDS, loss_info
from benloss.facts.splits import SPLITS
from benloss.layout import FIGURE_FILES
from benloss.report.plotting import LOSS_STYLE, save

log = logging.getLogger(__name__)


def learning_curves(history: pd.DataFrame) -> plt.Figure:
    """Validation F1 (samples, each loss's own rule), validation macro mAP (threshold-free, on the score the loss
    ranks by) and validation loss per epoch. Bands are ± std over seeds."""
    figure, (f1_axis, map_axis, loss_axis) = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    for loss in losses_present(history):
        runs = history[history["loss"] == loss]
        style = LOSS_STYLE[loss]
        label = loss_info(loss).abbreviation
        for axis, column in ((f1_axis, "f1_samples"), (map_axis, "map_macro"), (loss_axis, "val_loss")):
            stats = runs.groupby("epoch")[column].agg(["mean", "std"]).reset_index()
            axis.plot(stats["epoch"], stats["mean"], label=label, markersize=4, linewidth=1.6, **style)
            if runs["seed"].nunique() > 1:
                axis.fill_between(stats["epoch"], stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                                  color=style["color"], alpha=0.15, linewidth=0)  # fmt: skip
    f1_axis.set(xlabel="epoch", ylabel="validation F1 (sample-averaged)", title="Validation F1 per epoch")
    f1_axis.set_ylim(bottom=0)
    map_axis.set(xlabel="epoch", ylabel="validation macro mAP", title="Validation mAP per epoch (threshold-free)")
    map_axis.set_ylim(bottom=0)
    loss_axis.set(xlabel="epoch", ylabel="validation loss (each loss on its own scale)", title="Validation loss")
    loss_axis.set_yscale("symlog", linthresh=0.1)
    for axis in (f1_axis, map_axis, loss_axis):
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    f1_axis.legend(title="loss", ncol=2, fontsize=9)
    return figure


def time_curves(history: pd.DataFrame) -> plt.Figure:
    """Validation F1 (samples) against training seconds summed over the epochs, mean over seeds."""
    figure, axis = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
    for loss in losses_present(history):
        runs = history[history["loss"] == loss].sort_values(["seed", "epoch"])
        runs = runs.assign(elapsed=runs.groupby("seed")["train_seconds"].cumsum())
        stats = runs.groupby("epoch")[["elapsed", "f1_samples"]].mean()
        axis.plot(stats["elapsed"], stats["f1_samples"], label=loss_info(loss).abbreviation, markersize=4,
                  linewidth=1.6, **LOSS_STYLE[loss])  # fmt: skip
    axis.set(xlabel="training time (s, summed over epochs)", ylabel="validation F1 (sample-averaged)",
             title="Validation F1 per second of training")  # fmt: skip
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(title="loss", ncol=2, fontsize=9)
    return figure


def pairwise_matrix(pairwise: pd.DataFrame, metric: str = "F1 samples", alpha: float = 0.05) -> plt.Figure:
    """Differences row − column of ``metric`` (% points); * marks Holm-adjusted p < ``alpha``."""
    rows = pairwise[pairwise["metric"] == metric]
    names = list(dict.fromkeys([*rows["loss_a"], *rows["loss_b"]]))
    position = {name: i for i, name in enumerate(names)}
    difference = np.full((len(names), len(names)), np.nan)
    significant = np.zeros_like(difference, dtype=bool)
    for row in rows.itertuples():
        a, b = position[row.loss_a], position[row.loss_b]
        difference[a, b], difference[b, a] = row.difference, -row.difference
        significant[a, b] = significant[b, a] = row.p_holm < alpha
    limit = max(float(np.nanmax(np.abs(difference))) if len(rows) else 0.0, 1e-9)
    figure, axis = plt.subplots(figsize=(1.0 + 0.75 * len(names), 0.6 + 0.7 * len(names)), constrained_layout=True)
    image = axis.imshow(difference, cmap="RdBu", vmin=-limit, vmax=limit)
    for (i, j), value in np.ndenumerate(difference):
        if not np.isnan(value):
            axis.text(j, i, f"{value:+.1f}{'*' if significant[i, j] else ''}", ha="center", va="center", fontsize=8,
                      fontweight="bold" if significant[i, j] else "normal")  # fmt: skip
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set_title(f"{metric}: row − column (% points); * Holm p < {alpha}")
    figure.colorbar(image, ax=axis, label="difference (% points)")
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


def pr_curves(curves: pd.DataFrame) -> plt.Figure:
    """Micro precision–recall curve of each loss on the score it ranks by (one line per seed)."""
    figure, axis = plt.subplots(figsize=(6.5, 5), constrained_layout=True)
    for loss in losses_present(curves):
        runs = curves[curves["loss"] == loss]
        for i, (_, run) in enumerate(runs.groupby("seed")):
            label = loss_info(loss).abbreviation if i == 0 else None
            axis.plot(run["recall"], run["precision"], color=LOSS_STYLE[loss]["color"], linewidth=1.4,
                      alpha=1.0 if i == 0 else 0.35, label=label)  # fmt: skip
    axis.set(xlabel="recall (micro)", ylabel="precision (micro)", xlim=(0, 1), ylim=(0, 1.02),
             title="Test precision–recall, every class pooled")  # fmt: skip
    axis.grid(alpha=0.3)
    axis.legend(title="loss", ncol=2, fontsize=9, loc="best")
    return figure


def reliability_diagram(bins: pd.DataFrame) -> plt.Figure:
    """Observed frequency of positives against mean σ(z) per bin, pooled over seeds, for the losses whose σ(z) is
    a probability; the diagonal is perfect calibration, the bars the share of entries per bin."""
    figure, (axis, share) = plt.subplots(2, 1, figsize=(6.5, 6.5), height_ratios=(3, 1), sharex=True,
                                         constrained_layout=True)  # fmt: skip
    axis.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--", label="calibrated")
    losses = losses_present(bins) if len(bins) else []
    width = 1 / 15 / max(len(losses), 1)
    for k, loss in enumerate(losses):
        runs = bins[bins["loss"] == loss]
        pooled = runs.assign(p_sum=runs["confidence"].fillna(0) * runs["count"],
                             y_sum=runs["frequency"].fillna(0) * runs["count"])  # fmt: skip
        pooled = pooled.groupby(["bin_low", "bin_high"], as_index=False)[["count", "p_sum", "y_sum"]].sum()
        seen = pooled[pooled["count"] > 0]
        style = LOSS_STYLE[loss]
        axis.plot(seen["p_sum"] / seen["count"], seen["y_sum"] / seen["count"], label=loss_info(loss).abbreviation,
                  markersize=4, linewidth=1.4, **style)  # fmt: skip
        share.bar(pooled["bin_low"] + (k + 0.5) * width, pooled["count"] / pooled["count"].sum(), width=width,
                  color=style["color"])  # fmt: skip
    axis.set(ylabel="observed frequency of positives", xlim=(0, 1), ylim=(0, 1), title="Reliability of σ(z) (test)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    share.set(xlabel="mean σ(z) in the bin", ylabel="share", yscale="log")
    if not losses:
        axis.text(0.5, 0.5, "no loss of this run has a probabilistic σ(z)", ha="center", va="center")
    return figure


def _per_model(paths: Sequence[Path]) -> pd.DataFrame:
    frames = [pd.read_csv(path).assign(loss=loss, seed=seed) for loss, seed, path in by_model(paths)]
    return pd.concat(frames, ignore_index=True)


def write_figures(
    history_files: Sequence[Path], class_counts: Path, outdir: Path, pairwise: Path | None = None,
    pr_curve_files: Sequence[Path] = (), reliability_files: Sequence[Path] = (),
) -> None:  # fmt: skip
    """Write ``f1_curves.png/.pdf``, ``f1_time.png``, ``class_counts.png`` and, given the bootstrap's
    ``pairwise.csv``, ``pairwise_f1.png`` into ``outdir``, from the given ``history.csv`` files (one a model);
    with the evaluations' ``pr_curve.csv`` and ``reliability.csv`` files, also ``pr_curves.png`` and
    ``reliability.png``."""
    outdir = Path(outdir)
    roles = ["curves", "curves_pdf", "time_curves", "counts"] + (["pairwise"] if pairwise is not None else [])
    roles += ["pr_curves"] if pr_curve_files else []
    roles += ["reliability"] if reliability_files else []
    with atomic_outputs(*(outdir / FIGURE_FILES[role] for role in roles)) as paths:
        out = dict(zip(roles, paths, strict=True))
        history = histories(history_files)
        save(learning_curves(history), out["curves"], out["curves_pdf"])
        save(time_curves(history), out["time_curves"])
        save(class_count_chart(pd.read_csv(class_counts)), out["counts"])
        if pairwise is not None:
            save(pairwise_matrix(pd.read_csv(pairwise)), out["pairwise"])
        if pr_curve_files:
            save(pr_curves(_per_model(pr_curve_files)), out["pr_curves"])
        if reliability_files:
            save(reliability_diagram(_per_model(reliability_files)), out["reliability"])
    log.info("figures written to %s", outdir)
