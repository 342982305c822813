"""Conclusions that hold on every architecture, on hand-built pairwise tables: a pair counts only where each
architecture's Holm p is below ALPHA with the same sign, and nothing is claimed from too few seeds."""

from __future__ import annotations

import pandas as pd
import pytest

from benloss.report.across_architectures import ROBUST_COLUMNS, across_architectures, robust_pairs
from benloss.report.guidelines import ALPHA, MIN_SEEDS

COLUMNS = ["metric", "loss_a", "loss_b", "difference", "ci_low", "ci_high", "seed_std", "seeds", "p_value", "p_holm"]


def pairwise(rows: list[tuple[str, str, str, float, float]], seeds: int = MIN_SEEDS) -> pd.DataFrame:
    """A pairwise.csv from (metric, loss_a, loss_b, difference a − b, Holm p) rows."""
    return pd.DataFrame(
        [(metric, a, b, d, d - 1, d + 1, 0.5, seeds, p / 2, p) for metric, a, b, d, p in rows], columns=COLUMNS
    )


def kbranch(seeds: int = MIN_SEEDS) -> pd.DataFrame:
    return pairwise([("F1 samples", "CEL", "HL", 2.0, 0.001), ("F1 samples", "CEL", "SML", 1.0, 0.01),
                     ("F1 samples", "HL", "SML", -1.0, 0.02), ("mAP macro", "CEL", "HL", 0.5, 0.3)], seeds)  # fmt: skip


def test_a_pair_significant_with_one_sign_everywhere_holds_for_every_architecture():
    # ResNet-18 stores the CEL–HL pair the other way round: its difference HL − CEL is negative.
    resnet = pairwise([("F1 samples", "HL", "CEL", -3.0, 0.004), ("F1 samples", "CEL", "SML", 0.5, 0.03),
                       ("F1 samples", "HL", "SML", -2.0, 0.001), ("mAP macro", "CEL", "HL", 0.2, 0.01)])  # fmt: skip
    robust, sentences = across_architectures({"kbranch": kbranch(), "resnet18": resnet})
    assert list(robust.columns) == ROBUST_COLUMNS
    assert robust[["metric", "better", "worse"]].values.tolist() == [
        ["F1 samples", "CEL", "HL"], ["F1 samples", "CEL", "SML"], ["F1 samples", "SML", "HL"]
    ]  # fmt: skip
    first = robust.iloc[0]
    assert (first["smallest_difference"], first["largest_difference"], first["largest_p_holm"]) == (2.0, 3.0, 0.004)
    assert sentences == [
        "On every architecture studied (K-Branch CNN, ResNet-18), CEL beats HL and SML on F1 samples (by 0.5 to 3.0 "
        "points, Holm p ≤ 0.03 on each).",
        "On every architecture studied (K-Branch CNN, ResNet-18), SML beats HL on F1 samples (by 1.0 to 2.0 points, "
        "Holm p ≤ 0.02 on each).",
        f"On mAP macro, no loss beats another on every architecture studied (K-Branch CNN, ResNet-18) (Holm p < "
        f"{ALPHA} with the same sign on each).",
    ]


def test_opposite_signs_or_one_architecture_above_alpha_is_no_conclusion():
    vit = pairwise([("F1 samples", "CEL", "HL", -2.0, 0.001), ("F1 samples", "CEL", "SML", 1.0, 0.2),
                    ("F1 samples", "HL", "SML", -1.0, 0.02), ("mAP macro", "CEL", "HL", 0.5, 0.001)])  # fmt: skip
    robust = robust_pairs({"kbranch": kbranch(), "vit_small": vit})
    # CEL–HL flips sign, CEL–SML is not significant on ViT, mAP is not on the K-Branch CNN: only HL–SML is left
    assert robust[["metric", "better", "worse"]].values.tolist() == [["F1 samples", "SML", "HL"]]


def test_a_pair_missing_on_one_architecture_is_no_conclusion():
    only_f1 = pairwise([("F1 samples", "CEL", "HL", 2.0, 0.001)])
    robust = robust_pairs({"kbranch": kbranch(), "resnet50": only_f1})
    assert robust[["better", "worse"]].values.tolist() == [["CEL", "HL"]]


def test_too_few_seeds_on_any_architecture_claims_nothing_and_says_why():
    robust, sentences = across_architectures({"kbranch": kbranch(), "resnet18": kbranch(seeds=MIN_SEEDS - 1)})
    assert robust.empty and list(robust.columns) == ROBUST_COLUMNS
    assert sentences == [
        "No conclusion about losses is claimed for every architecture studied (K-Branch CNN, ResNet-18): that needs "
        f"at least {MIN_SEEDS} seeds per loss on each, to know how far seeds of one loss spread, and ResNet-18 has "
        f"{MIN_SEEDS - 1}."
    ]


def test_one_architecture_is_named_as_the_only_one():
    _, sentences = across_architectures({"kbranch": kbranch()})
    assert sentences[0].startswith("On the one architecture studied (K-Branch CNN), CEL beats HL and SML on F1")


def test_no_table_is_an_error():
    with pytest.raises(ValueError, match="no architecture's pairwise table"):
        robust_pairs({})
