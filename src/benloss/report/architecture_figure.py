"""The losses' ranks on each architecture: one panel per headline metric, architectures along x, rank 1 on top,
one line per loss, and Kendall's τ between neighbouring architectures above each gap."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from benloss.architectures import architecture
from benloss.facts.loss_catalog import LOSS_IDS, loss_info
from benloss.report.plotting import LOSS_STYLE

_LOSS_OF = {loss_info(loss).abbreviation: loss for loss in LOSS_IDS}


def neighbour_tau(agreement: pd.DataFrame, metric: str, first: str, second: str) -> pd.Series | None:
    """The agreement row of two architectures on ``metric``, stored either way round, if any."""
    rows = agreement[agreement["metric"] == metric]
    pair = {first, second}
    found = rows[[{a, b} == pair for a, b in zip(rows["architecture_a"], rows["architecture_b"], strict=True)]]
    return found.iloc[0] if len(found) else None


def ranking_figure(ranking: pd.DataFrame, agreement: pd.DataFrame) -> plt.Figure:
    """Ranks per architecture (``ranking.csv``) with τ and its 95 % interval between neighbours (``agreement.csv``);
    the winner's marker is drawn larger and each line is labelled with its loss at both ends."""
    archs = list(ranking["architecture"].drop_duplicates())
    metrics = list(ranking["metric"].drop_duplicates())
    losses = list(ranking["loss"].drop_duplicates())
    x = np.arange(len(archs))
    size = (0.6 + len(metrics) * (1.6 + 0.9 * len(archs)), 1.6 + 0.42 * len(losses))
    figure, axes = plt.subplots(1, len(metrics), figsize=size, sharey=True, squeeze=False, constrained_layout=True)
    for axis, metric in zip(axes[0], metrics, strict=True):
        rows = ranking[ranking["metric"] == metric].set_index(["loss", "architecture"])
        for loss in losses:
            ranked = rows.loc[loss].reindex(archs)
            style = LOSS_STYLE.get(_LOSS_OF.get(loss, ""), {"color": "0.3", "marker": "o"})
            axis.plot(x, ranked["rank"], linewidth=1.6, markersize=5, label=loss, **style)
            won = ranked["winner"].astype(bool).to_numpy()
            axis.plot(x[won], ranked["rank"].to_numpy()[won], linestyle="none", markersize=10, markerfacecolor="none",
                      markeredgewidth=1.4, color=style["color"], marker=style["marker"])  # fmt: skip
            ends = [(-1, 8, "left"), (0, -8, "right")] if len(archs) > 1 else [(-1, 8, "left")]
            for end, offset, side in ends:
                axis.annotate(loss, (x[end], ranked["rank"].iloc[end]), xytext=(offset, 0), textcoords="offset points",
                              ha=side, va="center", fontsize=8, color=style["color"])  # fmt: skip
        for i in range(len(archs) - 1):
            row = neighbour_tau(agreement, metric, archs[i], archs[i + 1])
            if row is not None:
                axis.annotate(f"τ = {row['tau']:.2f}\n[{row['ci_low']:.2f}, {row['ci_high']:.2f}]", (i + 0.5, 1.0),
                              xycoords=("data", "axes fraction"), xytext=(0, 3), textcoords="offset points",
                              ha="center", va="bottom", fontsize=8)  # fmt: skip
        axis.set_xticks(x, [architecture(arch).name for arch in archs], rotation=20 if len(archs) > 2 else 0)
        axis.set_yticks(range(1, len(losses) + 1))
        axis.set(xlim=(-0.6 if len(archs) > 1 else -0.35, len(archs) - 0.4), ylim=(len(losses) + 0.5, 0.5))
        axis.set_title(metric, pad=30 if len(archs) > 1 else 6, fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("rank (1 = best)")
    figure.suptitle("Rank of each loss per architecture (outlined marker: winner); τ: Kendall's τ-b, 95 % interval",
                    fontsize=10)  # fmt: skip
    return figure
