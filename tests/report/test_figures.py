"""Tests of benloss.report.figures: Fig. 2, the time curves and the pairwise matrix, from fake runs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benloss.evaluation.results import histories
from benloss.report.figures import learning_curves, pairwise_matrix, time_curves, write_figures

from ..support import histories_of, write_fake_run


def test_figures_plot_one_curve_per_loss_with_the_data(tmp_path):
    write_fake_run(tmp_path)

    figure = learning_curves(histories(histories_of(tmp_path)))
    f1_axis = figure.axes[0]
    lines = {line.get_label(): line for line in f1_axis.get_lines()}
    assert list(lines) == ["CEL", "FL", "W-CEL", "HAL", "HL", "RL", "SML"]
    expected = np.mean([0.6 * np.minimum(np.arange(1, 6) / 7, 1), 0.61 * np.minimum(np.arange(1, 6) / 7, 1)], axis=0)
    np.testing.assert_allclose(lines["SML"].get_ydata(), expected)
    assert len(f1_axis.collections) == 7  # a ± std band per loss, two seeds each
    assert len({line.get_color() for line in lines.values()}) == 7
    write_figures(histories_of(tmp_path), tmp_path / "class_counts.csv", tmp_path / "figures")
    assert (tmp_path / "figures" / "f1_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "figures" / "f1_curves.pdf").read_bytes()[:5] == b"%PDF-"
    assert (tmp_path / "figures" / "class_counts.png").stat().st_size > 10_000


def test_time_curves_put_validation_f1_against_summed_training_seconds(tmp_path):
    write_fake_run(tmp_path)

    lines = {line.get_label(): line for line in time_curves(histories(histories_of(tmp_path))).axes[0].get_lines()}
    # SML (position 6) trains 7 s per epoch; its curve is 0.605 · min(epoch / 7, 1) averaged over seeds.
    np.testing.assert_allclose(lines["SML"].get_xdata(), 7.0 * np.arange(1, 6))
    np.testing.assert_allclose(lines["SML"].get_ydata(), 0.605 * np.arange(1, 6) / 7)


def test_pairwise_matrix_is_antisymmetric_and_stars_significant_cells(tmp_path):
    pairwise = pd.DataFrame(
        {"metric": "F1 samples", "loss_a": ["CEL", "CEL", "SML"], "loss_b": ["SML", "RL", "RL"],
         "difference": [-2.5, 1.0, 3.5], "ci_low": 0.0, "ci_high": 0.0, "p_value": 0.01, "p_holm": [0.01, 0.3, 0.04]}
    )  # fmt: skip
    axis = pairwise_matrix(pairwise).axes[0]
    matrix = axis.get_images()[0].get_array()
    assert matrix[1, 0] == 2.5 and matrix[0, 1] == -2.5 and matrix.mask[2, 2]  # the diagonal is blank
    texts = {text.get_text() for text in axis.texts}
    assert {"-2.5*", "+2.5*", "+1.0", "-1.0", "+3.5*", "-3.5*"} == texts
    pairwise.to_csv(tmp_path / "pairwise.csv", index=False)
    write_fake_run(tmp_path)
    write_figures(
        histories_of(tmp_path),
        tmp_path / "class_counts.csv",
        tmp_path / "figures",
        pairwise=tmp_path / "pairwise.csv",
    )
    for name in ("pairwise_f1.png", "f1_time.png"):
        assert (tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
