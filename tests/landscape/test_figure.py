"""The landscape figures: one surface and contour pair, and one pair of slice panels, per loss."""

from __future__ import annotations

import numpy as np

from benloss.landscape.figure import landscape_figure, slices_figure
from benloss.landscape.landscape import Landscape
from benloss.report.plotting import save


def bowl(scale: float) -> Landscape:
    """A landscape with a known bowl of height ``scale`` and a trajectory ending at its centre."""
    axis = np.linspace(-1, 1, 5)
    x, y = np.meshgrid(axis, axis, indexing="ij")
    trajectory = np.array([[0.8, 0.6], [0.3, 0.2], [0.0, 0.0]])
    coordinates = np.linspace(-1, 1, 9)
    arrays = {"pca_x": axis, "pca_y": axis, "pca_loss": scale * (x**2 + y**2), "explained": np.array([0.7, 0.2]),
              "trajectory": trajectory, "trajectory_loss": scale * (trajectory**2).sum(1),
              "slice_coordinates": coordinates, "slice_loss": scale * np.stack([coordinates**2, 2 * coordinates**2]),
              "slice_f1_samples": np.stack([1 - coordinates**2 / 2] * 2)}  # fmt: skip
    return Landscape(arrays, {"settings": {"radius": 0.5}, "sharpness": 0.375 * scale})


def test_every_loss_gets_its_surface_contours_and_slices():
    losses = ("cel", "fl", "wcel", "rl")  # a second row, part empty
    per_model = {loss: bowl(10.0**i) for i, loss in enumerate(losses)}
    figure = landscape_figure(per_model)
    assert sum(axis.name == "3d" for axis in figure.axes) == len(losses)
    assert sum(axis.get_title().endswith(": contours") for axis in figure.axes) == len(losses)
    assert "own scale" in figure._suptitle.get_text()
    figure.canvas.draw()
    figure = slices_figure(per_model)
    assert sum(axis.get_visible() for axis in figure.axes) == 2 * len(losses)
    figure.canvas.draw()


def test_the_figures_save_as_the_report_saves_them(tmp_path):
    save(slices_figure({"sml": bowl(1.0)}), tmp_path / "slices.png", tmp_path / "slices.pdf")
    assert (tmp_path / "slices.png").stat().st_size > 0 and (tmp_path / "slices.pdf").stat().st_size > 0


def test_a_surface_with_overflowed_points_still_draws(tmp_path):
    landscape = bowl(1.0)
    landscape.arrays["pca_loss"][0, 0] = np.inf
    save(landscape_figure({"hl": landscape}), tmp_path / "landscape.png")
    assert (tmp_path / "landscape.png").exists()
