"""Figures of the landscapes of several losses: surfaces over the trajectory planes, and 1D slices.

Each loss is drawn on its own scale (the losses' values are not comparable with one another); the contour levels
are quantiles of its surface, so the shape near its minimum shows even where the loss climbs steeply at the edges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np

from benloss.facts.loss_catalog import loss_info
from benloss.landscape.landscape import Landscape
from benloss.report.plotting import LOSS_STYLE

#: Losses side by side in one row of a figure.
COLUMNS = 3
#: Contour levels of a surface.
LEVELS = 16
#: Inches per panel.
PANEL_INCHES = 2.6


def _levels(values: np.ndarray) -> np.ndarray:
    """Contour levels at quantiles of the finite values (at least two distinct ones)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.array([0.0, 1.0])
    levels = np.unique(np.quantile(finite, np.linspace(0, 1, LEVELS)))
    return levels if len(levels) > 1 else np.array([levels[0], levels[0] + 1.0])


def _plane(landscape: Landscape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The PCA grid's coordinates and its training loss, non-finite values raised to the surface's top level."""
    arrays = landscape.arrays
    x, y = np.meshgrid(arrays["pca_x"], arrays["pca_y"], indexing="ij")
    loss = arrays["pca_loss"]
    return x, y, np.where(np.isfinite(loss), loss, _levels(loss)[-1])


def _axis_labels(axis: plt.Axes, landscape: Landscape) -> None:
    first, second = landscape.arrays["explained"]
    axis.set_xlabel(f"PC1 ({100 * first:.0f} %)", fontsize=7)
    axis.set_ylabel(f"PC2 ({100 * second:.0f} %)", fontsize=7)
    axis.tick_params(labelsize=6)


def _trajectory(axis: plt.Axes, landscape: Landscape, loss_id: str, with_height: bool) -> None:
    """The snapshots' path in the plane (on the surface with ``with_height``), the final weights as a star."""
    path, style = landscape.arrays["trajectory"], LOSS_STYLE[loss_id]
    heights = (landscape.arrays["trajectory_loss"],) if with_height else ()
    axis.plot(path[:, 0], path[:, 1], *heights, color="white", linewidth=2.2)
    axis.plot(path[:, 0], path[:, 1], *heights, color=style["color"], marker=style["marker"], markersize=2.5,
              linewidth=1.2)  # fmt: skip
    final = (path[-1:, 0], path[-1:, 1], *(h[-1:] for h in heights))
    axis.plot(*final, color="red", marker="*", markersize=7, linestyle="none")


def landscape_figure(per_model: Mapping[str, Landscape]) -> plt.Figure:
    """Per loss, the training loss over its trajectory's PCA plane as a 3D surface and as contours, the trajectory
    drawn on both; ``COLUMNS`` losses a row, in the order given."""
    rows = math.ceil(len(per_model) / COLUMNS)
    columns = min(COLUMNS, len(per_model))
    figure = plt.figure(figsize=(2 * columns * PANEL_INCHES, rows * PANEL_INCHES))
    for index, (loss_id, landscape) in enumerate(per_model.items()):
        x, y, loss = _plane(landscape)
        title = loss_info(loss_id).abbreviation
        surface = figure.add_subplot(rows, 2 * columns, 2 * index + 1, projection="3d")
        surface.computed_zorder = False  # the trajectory is drawn over the surface, not hidden inside it
        surface.plot_surface(x, y, loss, cmap="viridis", linewidth=0, antialiased=False, alpha=0.85)
        _trajectory(surface, landscape, loss_id, with_height=True)
        _axis_labels(surface, landscape)
        surface.set_title(f"{title}: training loss", fontsize=8, color=LOSS_STYLE[loss_id]["color"])
        contour = figure.add_subplot(rows, 2 * columns, 2 * index + 2)
        levels = _levels(loss)
        filled = contour.contourf(x, y, loss, levels=levels, cmap="viridis")
        contour.contour(x, y, loss, levels=levels, colors="black", linewidths=0.3)
        _trajectory(contour, landscape, loss_id, with_height=False)
        _axis_labels(contour, landscape)
        contour.set_title(f"{title}: contours", fontsize=8)
        bar = figure.colorbar(filled, ax=contour, shrink=0.85, ticks=levels[:: max(1, len(levels) // 4)])
        bar.ax.tick_params(labelsize=6)
    figure.suptitle("Training loss over each model's trajectory plane (first two principal components of its "
                    "snapshots' displacements from the final weights, ★); each loss on its own scale, contour levels "
                    "at its quantiles", fontsize=9)  # fmt: skip
    figure.tight_layout()
    return figure


def slices_figure(per_model: Mapping[str, Landscape]) -> plt.Figure:
    """Per loss, its training loss (own scale) and sample F1 (0 to 1) along each of the two random filter-normalised
    directions, the sharpness radius marked; ``COLUMNS`` losses a row."""
    rows = math.ceil(len(per_model) / COLUMNS)
    columns = min(COLUMNS, len(per_model))
    figure, axes = plt.subplots(2 * rows, columns, figsize=(columns * PANEL_INCHES, 2 * rows * PANEL_INCHES * 0.7),
                                squeeze=False, sharex=True)  # fmt: skip
    for index, (loss_id, landscape) in enumerate(per_model.items()):
        row, column = divmod(index, columns)
        top, bottom = axes[2 * row, column], axes[2 * row + 1, column]
        arrays, colour = landscape.arrays, LOSS_STYLE[loss_id]["color"]
        radius = landscape.summary["settings"]["radius"]
        for k, linestyle in enumerate(("-", "--")):
            top.plot(arrays["slice_coordinates"], arrays["slice_loss"][k], color=colour, linestyle=linestyle,
                     label=f"direction {k + 1}")  # fmt: skip
            bottom.plot(arrays["slice_coordinates"], arrays["slice_f1_samples"][k], color=colour, linestyle=linestyle)
        for axis in (top, bottom):
            for r in (-radius, radius):
                axis.axvline(r, color="grey", linewidth=0.6, linestyle=":")
            axis.tick_params(labelsize=6)
        top.set_title(f"{loss_info(loss_id).abbreviation} (sharpness {landscape.summary['sharpness']:.3g})",
                      fontsize=8, color=colour)  # fmt: skip
        top.set_ylabel("training loss", fontsize=7)
        bottom.set_ylabel("sample F1", fontsize=7)
        bottom.set_ylim(0, 1)
        bottom.set_xlabel("step along the direction (filter-normalised)", fontsize=7)
        if index == 0:
            top.legend(fontsize=6)
    for index in range(len(per_model), rows * columns):
        row, column = divmod(index, columns)
        axes[2 * row, column].set_visible(False)
        axes[2 * row + 1, column].set_visible(False)
    figure.suptitle("1D slices along two random filter-normalised directions (dotted: the sharpness radius); "
                    "each loss's training loss on its own scale", fontsize=9)  # fmt: skip
    figure.tight_layout()
    return figure
