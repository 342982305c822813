"""The report's view of ``labels/summary.json``'s absent patches and subset (``benloss.report.html.selection_view``)."""

from __future__ import annotations

from benloss.facts.nomenclature import classes
from benloss.report.html import selection_view

KEPT = {"train": 8, "val": 4, "test": 4}


def test_a_whole_archive_without_a_subset_shows_nothing():
    """A v1.0 label stage's summary (absent counts of zero, no subset, no map counts): the section stays out."""
    view = selection_view({"kept": KEPT, "listed_but_absent": {"train": 0, "val": 0, "test": 0}})
    assert (view["missing"], view["unmapped"], view["subset"]) == (False, 0, False)
    assert [row["listed"] for row in view["splits"]] == [8, 4, 4] and view["classes"] == []


def test_a_partial_copy_with_a_subset_shows_listed_present_and_drawn():
    per_class = {name: {"of": 2, "drawn": 1, "share_of": 0.125, "share_drawn": 0.125} for name in classes()}
    subset = {"seed": 3, "method": "m", "splits": {
        "train": {"requested": 0.5, "of": 16, "drawn": 8, "classes": per_class},
        "val": {"requested": 5000, "of": 4, "drawn": 4, "classes": per_class},
        "test": {"requested": 1.0, "of": 4, "drawn": 4, "classes": per_class}}}  # fmt: skip
    summary = {"kept": KEPT, "listed_but_absent": {"train": 237_855, "val": 122_338, "test": 119_821},
               "reference_maps_absent": {"train": 8, "val": 4, "test": 3}, "subset": subset}  # fmt: skip
    view = selection_view(summary)
    assert (view["missing"], view["unmapped"], view["subset"], view["seed"]) == (True, 15, True, 3)
    rows = {row["split"]: row for row in view["splits"]}
    assert (rows["train"]["present"], rows["train"]["listed"], rows["train"]["kept"]) == (16, 237_871, 8)
    assert [rows[split]["asked"] for split in ("train", "val", "test")] == ["50 %", "5,000 patches", "100 %"]
    assert [row["name"] for row in view["classes"]] == list(classes())
    assert view["classes"][0]["cells"] == [per_class["Urban fabric"]] * 3
