"""Guideline sentences on constructed tables: a winner only when it beats the runner-up significantly (Holm)."""

from __future__ import annotations

import pandas as pd

from benloss.report.guidelines import guidelines, names
from benloss.report.tables import CALIBRATED_F1

LOSSES = ["CEL", "HL", "SML", "RL"]


def table2() -> pd.DataFrame:
    return pd.DataFrame(
        {"test_f1": [0.60, 0.68, 0.70, 0.50], "rare_f1": [0.30, 0.20, 0.25, 0.10], "macro_f1": [0.4, 0.5, 0.45, 0.3],
         "test_map": [0.55, 0.62, 0.61, 0.40],
         "epochs_to_90": [3.0, 2.0, 2.0, 5.0], "seconds_to_90": [30.0, 25.0, 20.0, 50.0],
         "f1_auc": [0.5, 0.6, 0.55, 0.4], "zero_grad_fraction": [0.0, 0.1, 0.2, 0.3]},
        index=pd.Index(LOSSES, name="loss"),
    )  # fmt: skip


def table1() -> pd.DataFrame:
    rows = [("P", [70.0, 76.0, 71.0, 58.0]), ("R", [55.0, 60.0, 74.0, 76.0]), ("F1", [60.0, 68.0, 70.0, 50.0]),
            (CALIBRATED_F1, [63.0, 68.5, 70.0, 55.0])]  # fmt: skip
    return pd.DataFrame(
        [{"metric": m, "loss": loss, "mean": v} for m, vs in rows for loss, v in zip(LOSSES, vs, strict=True)]
    )


def pairwise(p_holm: dict[tuple[str, str], float], seeds: int = 3) -> pd.DataFrame:
    """Every pair for each tested metric, differences from Table 2; Holm p from ``p_holm`` (default 0.001), and
    ``seeds`` seeds per loss."""
    t2, rows = table2(), []
    tested = (("F1 samples", "test_f1"), ("F1 rarest third", "rare_f1"), ("F1 macro", "macro_f1"),
              ("mAP macro", "test_map"))  # fmt: skip
    for metric, column in tested:
        for i, a in enumerate(LOSSES):
            for b in LOSSES[i + 1 :]:
                difference = 100 * (t2.loc[a, column] - t2.loc[b, column])
                p = p_holm.get((metric, a, b), 0.001)
                interval = {"ci_low": difference - 1, "ci_high": difference + 1}
                rows.append({"metric": metric, "loss_a": a, "loss_b": b, "difference": difference, **interval,
                             "seeds": seeds, "p_value": p / 2, "p_holm": p})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_significant_winner_is_named_with_its_margin_over_the_runner_up():
    sentences = guidelines(table2(), table1(), pairwise({}))
    assert sentences[0] == (
        "Highest overall accuracy: SML (test F1 70.0 %), ahead of the runner-up HL by 2.0 points "
        "(95 % interval +1.0 to +3.0, Holm p = 0.001)."
    )
    # The pair is stored as (CEL, SML): the interval of SML − CEL is the negated, swapped one.
    assert sentences[1].startswith("Best on rare classes: CEL (mean F1 30.0 % over the rarest third of the classes), ")
    assert "ahead of the runner-up SML by 5.0 points (95 % interval +4.0 to +6.0" in sentences[1]


def test_without_a_significant_lead_the_tied_group_is_named():
    # SML vs HL and SML vs CEL not significant; SML vs RL significant: the group is SML, HL and CEL.
    tied = pairwise({("F1 samples", "HL", "SML"): 0.2, ("F1 samples", "CEL", "SML"): 0.06})
    sentence = guidelines(table2(), table1(), tied)[0]
    assert sentence == (
        "Highest overall accuracy: SML, HL and CEL are tied within noise (best SML, test F1 70.0 %; "
        "Holm p ≥ 0.05 against it)."
    )
    assert "RL" not in sentence


def test_untested_measures_say_so_and_ties_share_the_claim():
    sentences = guidelines(table2(), table1(), pairwise({}))
    assert sentences[3] == (
        "Best ranking of each class's images (threshold-free): HL (macro mAP 62.0 %), ahead of the runner-up SML "
        "by 1.0 points (95 % interval +0.0 to +2.0, Holm p = 0.001)."
    )
    assert (
        sentences[4]
        == "Fastest to 90 % of its final validation F1: HL and SML (2 epoch(s); not tested for significance)."
    )
    assert sentences[5] == (
        "Fastest in training time to 90 % of its final validation F1: SML "
        "(20 s of training; not tested for significance)."
    )
    assert (
        "Most recall-leaning (recall − precision): RL (+18.0 points); most precision-leaning: HL (-16.0 points)."
        in (sentences)
    )


def test_without_the_bootstrap_no_test_metric_claims_significance():
    sentences = guidelines(table2(), table1())
    assert sentences[0] == "Highest overall accuracy: SML (test F1 70.0 %; not tested for significance)."


def test_names_join_with_and():
    assert names(["A"]) == "A" and names(["A", "B"]) == "A and B" and names(["A", "B", "C"]) == "A, B and C"


def test_with_fewer_than_three_seeds_no_loss_is_named_and_the_comparison_is_between_models():
    one = guidelines(table2(), table1(), pairwise({}, seeds=1))[0]
    assert one == (
        "Highest overall accuracy: no claim about losses can be made from 1 seed per loss (at least 3 are needed "
        "to know how far seeds of one loss spread); between the trained models, SML (test F1 70.0 %), ahead of the "
        "runner-up HL by 2.0 points (95 % interval +1.0 to +3.0, Holm p = 0.001)."
    )
    tied = guidelines(table2(), table1(), pairwise({("F1 samples", "HL", "SML"): 0.2}, seeds=2))[0]
    assert tied.startswith("Highest overall accuracy: no claim about losses can be made from 2 seeds per loss")
    assert "; between the seed means, with a seed spread from two, SML and HL" in tied
    assert tied.endswith(
        "SML and HL are tied within noise, as seed means (best SML, test F1 70.0 %; Holm p ≥ 0.05 against it)."
    )
    assert "no claim" not in guidelines(table2(), table1(), pairwise({}, seeds=3))[0]
