"""Conservation rows and their per-loss summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benloss.explanation.conservation import (
    CONSERVATION_COLUMNS,
    SUMMARY_COLUMNS,
    conservation_row,
    explained_score,
    summarise_conservation,
)


def test_each_loss_explains_the_score_it_decides_by():
    assert [explained_score(loss) for loss in ("cel", "fl", "wcel", "hal", "hl", "rl", "sml", "asl", "zlpr")] == [
        "z", "z", "z", "z", "z", "z − mean_c z", "z − τ(z)", "z", "z",
    ]  # fmt: skip


def test_a_row_holds_the_ratio_of_relevance_to_score():
    row = conservation_row("rl", "P1", "Urban fabric", 2.0, 1.9)
    assert list(row) == list(CONSERVATION_COLUMNS)
    assert (row["loss"], row["explains"], row["ratio"]) == ("RL", "z − mean_c z", pytest.approx(0.95))
    assert np.isnan(conservation_row("cel", "P1", "Urban fabric", 0.0, 0.3)["ratio"])
    constant = conservation_row("sml", "P1", "Urban fabric", 1.0, 0.0, constant=True)
    assert constant["constant"] and np.isnan(constant["ratio"])


def test_the_summary_gives_percentiles_and_the_share_within_five_percent_per_loss():
    ratios = {"SML": [1.0, 0.97, 1.06, 0.0, 1.02], "CEL": [0.5, 1.0, float("nan"), 1.04]}
    rows = pd.DataFrame([{"loss": loss, "explains": "z", "constant": False, "ratio": r}
                         for loss, values in ratios.items() for r in values])  # fmt: skip
    constant = {"loss": "SML", "explains": "z", "constant": True, "ratio": float("nan")}  # counted apart
    rows = pd.concat([rows.iloc[:5], pd.DataFrame([constant, constant]), rows.iloc[5:]], ignore_index=True)
    summary = summarise_conservation(rows).set_index("loss")
    assert list(summary.reset_index().columns) == list(SUMMARY_COLUMNS) and list(summary.index) == ["SML", "CEL"]
    sml = np.array(ratios["SML"])
    assert (summary.loc["SML", "explanations"], summary.loc["SML", "constant"]) == (7, 2)
    assert summary.loc["SML", "median"] == pytest.approx(1.0)
    assert summary.loc["SML", "p5"] == pytest.approx(0.0 + 0.05 * 4 * (0.97 - 0.0))  # linear between sorted values
    assert summary.loc["SML", "p95"] == pytest.approx(np.percentile(sml, 95))
    assert summary.loc["SML", "within_tolerance"] == pytest.approx(3 / 5)  # 1.0, 0.97, 1.02
    assert summary.loc["CEL", "explanations"] == 4 and summary.loc["CEL", "median"] == pytest.approx(1.0)
    assert summary.loc["CEL", "within_tolerance"] == pytest.approx(2 / 4)  # NaN counts as not conserved
