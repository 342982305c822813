"""Tables, figures, the paper comparison and the report with any subset of the nine losses, in any order."""

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest

from benloss.evaluation.results import histories
from benloss.facts.loss_catalog import LOSS_IDS, loss_info
from benloss.report.figures import learning_curves
from benloss.report.guidelines import guidelines
from benloss.report.html import table1_comparison
from benloss.report.plotting import LOSS_STYLE
from benloss.report.tables import write_tables

from ..support import histories_of, table_inputs, write_fake_run

LATER = ("zlpr", "cel", "asl", "rl")  # later additions mixed with paper losses, out of LOSS_IDS order


def test_every_loss_has_its_own_colour_and_marker():
    assert set(LOSS_STYLE) == set(LOSS_IDS)
    assert len({mcolors.to_hex(style["color"]) for style in LOSS_STYLE.values()}) == len(LOSS_IDS)
    assert len({style["marker"] for style in LOSS_STYLE.values()}) == len(LOSS_IDS)


def test_tables_take_a_subset_in_loss_ids_order_with_dashes_for_missing_paper_numbers(tmp_path):
    truth = write_fake_run(tmp_path, losses=LATER)
    tables = write_tables(*table_inputs(tmp_path), tmp_path / "class_counts.csv", tmp_path / "tables")
    f1 = tables["table1"].query("metric == 'F1'").set_index("loss")
    assert list(f1.index) == ["CEL", "RL", "ASL", "ZLPR"]
    for loss in LATER:
        expected = np.mean([100 * truth[(loss, seed)] for seed in (0, 1)])
        assert f1.loc[loss_info(loss).abbreviation, "mean"] == pytest.approx(expected)
    assert list(tables["table2"].index) == ["CEL", "RL", "ASL", "ZLPR"]
    assert list(tables["table2"]["convexity_mark"]) == ["H", "H", "L", "H"]  # ASL is not convex, ZLPR is
    paper_block = (tmp_path / "tables" / "table1.md").read_text().split("Table 1 of the paper")[1]
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in paper_block.splitlines() if "|" in line}
    assert [cell.strip() for cell in rows["F1"]] == ["62.3", "62.9", "—", "—"]  # CEL and RL from the paper
    assert list(tables["per_class"].columns) == ["CEL", "RL", "ASL", "ZLPR"]


def test_report_comparison_shows_no_paper_number_for_later_additions(tmp_path):
    write_fake_run(tmp_path, losses=LATER)
    write_tables(*table_inputs(tmp_path), tmp_path / "class_counts.csv", tmp_path / "tables")
    rows = {
        row["metric"]: {cell["loss"]: cell for cell in row["cells"]}
        for row in table1_comparison(pd.read_csv(tmp_path / "tables" / "table1.csv"))
    }
    assert rows["P"]["ASL"]["paper"] is None and rows["P"]["ZLPR"]["difference"] is None
    ours_cel = pd.read_csv(tmp_path / "tables" / "table1.csv").query("metric == 'P' and loss == 'CEL'")["mean"].item()
    assert rows["P"]["CEL"]["paper"] == 75.2
    assert rows["P"]["CEL"]["difference"] == pytest.approx(ours_cel - 75.2)


def test_all_nine_losses_get_curves_and_guidelines(tmp_path):
    write_fake_run(tmp_path, losses=LOSS_IDS[::-1])
    figure = learning_curves(histories(histories_of(tmp_path)))
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels == [loss_info(loss).abbreviation for loss in LOSS_IDS]
    tables = write_tables(*table_inputs(tmp_path), tmp_path / "class_counts.csv", tmp_path / "tables")
    # write_fake_run gives the i-th loss written (here ZLPR first, CEL last) test F1 0.1 i: CEL is best.
    sentences = guidelines(tables["table2"], tables["table1"])
    assert sentences[0].startswith("Highest overall accuracy: CEL")
