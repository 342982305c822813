"""Tests of benloss.report.tables: Table 1, Table 2 and their marks, from fake runs with known numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benloss.facts.loss_catalog import PAPER_LOSS_IDS, loss_info
from benloss.report.tables import (
    CALIBRATED_F1,
    agreement_summary,
    epochs_to_fraction,
    format_cell,
    marks,
    paper_marks,
    write_tables,
)

from ..support import table_inputs, write_fake_run


def test_table1_means_and_stds(tmp_path):
    truth = write_fake_run(tmp_path)
    tables = write_tables(*table_inputs(tmp_path), tmp_path / "class_counts.csv", tmp_path / "tables", demo=True)
    long = tables["table1"]
    f1 = long[long["metric"] == "F1"].set_index("loss")
    assert list(f1.index) == ["CEL", "FL", "W-CEL", "HAL", "HL", "RL", "SML"]
    for i, loss in enumerate(PAPER_LOSS_IDS):
        values = [100 * truth[(loss, s)] for s in (0, 1)]
        row = f1.iloc[i]
        assert row["mean"] == pytest.approx(np.mean(values)) and row["std"] == pytest.approx(np.std(values, ddof=1))
    text = (tmp_path / "tables" / "table1.md").read_text()
    assert "DEMO" in text and "60.5 ± 0.7" in text  # SML: 60 and 61 %
    assert "69.9" in (tmp_path / "tables" / "table1_paper.csv").read_text()
    assert "\\begin{tabular}" in (tmp_path / "tables" / "table1.tex").read_text()
    assert long["ci_low"].isna().all()  # no bootstrap intervals given


def test_table1_takes_the_bootstrap_intervals_of_each_row(tmp_path):
    write_fake_run(tmp_path)
    rows = [{"rule": rule, "loss": info.abbreviation, "metric": metric, "estimate": 0.0, "ci_low": 10.0 * i + k,
             "ci_high": 10.0 * i + k + 5, "test_se": 1.5, "seed_std": 0.7, "seeds": 2, "dominant_spread": "test set"}
            for i, info in enumerate(map(loss_info, PAPER_LOSS_IDS)) for rule in ("own", "calibrated")
            for k, metric in enumerate(("precision_samples", "f1_samples", "f1_micro", "precision_macro"))
            ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "intervals.csv", index=False)
    long = write_tables(
        *table_inputs(tmp_path), tmp_path / "class_counts.csv", tmp_path / "out", intervals=tmp_path / "intervals.csv"
    )["table1"]
    sml = long[long["loss"] == "SML"].set_index("metric")
    assert sml.loc["P", "ci_low"] == 60 and sml.loc["F1", "ci_high"] == 66 and sml.loc["F1 micro", "ci_low"] == 62
    assert sml.loc["P macro", "ci_low"] == 63 and sml.loc[CALIBRATED_F1, "ci_low"] == 61
    assert np.isnan(sml.loc["R micro", "ci_low"]) and sml.loc["F1", "dominant_spread"] == "test set"
    text = (tmp_path / "out" / "table1.md").read_text()
    assert "60.5 ± 0.7 [61.0, 66.0]" in text
    f1_row = next(line for line in text.splitlines() if line.startswith("| F1 |"))
    assert f1_row.endswith("| test set (7 of 7 losses) |")  # the larger spread, per metric
    r_micro = next(line for line in text.splitlines() if line.startswith("| R micro |"))
    assert r_micro.endswith("| — |")  # no interval given, so no spread known


def test_table2_numbers_and_marks(tmp_path):
    write_fake_run(tmp_path)
    table2 = write_tables(*table_inputs(tmp_path), tmp_path / "class_counts.csv", tmp_path / "tables")["table2"]
    assert table2.loc["SML", "test_f1"] == pytest.approx(0.605)
    assert list(table2["test_f1_mark"]) == ["L", "L", "M", "M", "H", "H", "H"]
    # Curves reach their final value at epoch i + 1, so 90 % is first reached at epoch ceil(0.9 (i + 1)).
    assert list(table2["epochs_to_90"]) == [1, 2, 3, 4, 5, 5, 5]
    assert table2.loc["RL", "differentiability_mark"] == "L" and table2.loc["FL", "convexity_mark"] == "L"
    # Rare classes are the last six by training count: per-class F1 rises linearly to the loss's F1.
    rare = np.linspace(0, 0.605, 19)[13:].mean()
    assert table2.loc["SML", "rare_f1"] == pytest.approx(rare)
    # Loss i trains 1 + i seconds per epoch and reaches 90 % at epoch ceil(0.9 (i + 1)), capped at 5.
    assert list(table2["seconds_to_90"]) == [(1 + i) * min(np.ceil(0.9 * (i + 1)), 5) for i in range(7)]


def test_table2_sets_the_paper_marks_beside_the_measured_ones(tmp_path):
    write_fake_run(tmp_path)
    table2 = write_tables(*table_inputs(tmp_path), tmp_path / "class_counts.csv", tmp_path / "tables")["table2"]
    assert list(table2["paper_overall_accuracy"]) == ["L", "L", "M", "M", "M", "L", "H"]
    assert list(table2["paper_convexity_differentiability"]) == ["M", "M", "M", "NA", "H", "NA", "M"]
    # Measured overall-accuracy marks are L L M M H H H (test_f1 rises with the loss's position).
    assert list(table2["agree_overall_accuracy"]) == ["yes", "yes", "yes", "yes", "no", "no", "yes"]
    # CEL convex and differentiable (H) against the paper's M; HAL and RL are NA in the paper, so not compared.
    assert table2.loc["CEL", "agree_convexity_differentiability"] == "no"
    assert table2.loc["HL", "agree_convexity_differentiability"] == "yes"
    assert (
        table2.loc["HAL", "agree_convexity_differentiability"]
        == "—"
        == table2.loc["RL", "agree_convexity_differentiability"]
    )
    summary = agreement_summary(table2).set_index("criterion")
    assert summary.loc["overall_accuracy", "agree"] == 5 and summary.loc["overall_accuracy", "compared"] == 7
    assert summary.loc["convexity_differentiability", "compared"] == 5
    saved = pd.read_csv(tmp_path / "tables" / "table2.csv", index_col="loss")
    assert saved.loc["SML", "paper_learning_efficiency"] == "H"


def test_a_loss_the_paper_did_not_study_has_no_paper_marks():
    assert set(paper_marks("not-in-the-paper").values()) == {"—"}
    assert paper_marks("rl")["paper_learning_efficiency"] == "H"


def test_marks_by_thirds():
    values = pd.Series([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    assert list(marks(values, True)) == ["H", "H", "H", "M", "M", "L", "L"]
    assert list(marks(values, False)) == ["L", "L", "M", "M", "H", "H", "H"]
    assert epochs_to_fraction(np.array([0.1, 0.5, 0.95, 1.0])) == 3


def test_a_small_nonzero_cell_keeps_significant_digits():
    assert format_cell(1.0410339e-05) == "1.04e-05" and format_cell(-0.0003) == "-0.0003"
    assert format_cell(0.0) == "0.000" and format_cell(0.5) == "0.500" and format_cell(float("nan")) == "—"
