"""Guidelines written from the measured numbers, each by a rule stated here, never as fixed prose.

A rule on a test metric names a winning loss only from at least ``MIN_SEEDS`` seeds per loss and when the
two-level bootstrap (seeds and test set) finds it ahead of the runner-up with a Holm-adjusted p below ``ALPHA``;
otherwise it names the group tied with the best. With fewer seeds the spread between seeds of one loss is unknown
(or known from two values only), so no claim about losses is made: the sentence says so and gives the comparison
as one between the trained models. Rules on training curves have no test of significance and say so.
"""

from __future__ import annotations

import pandas as pd

from benloss.evaluation.bootstrap import PAIRWISE_METRICS
from benloss.facts.paper import TABLE1
from benloss.report.tables import CALIBRATED_F1

ALPHA = 0.05
#: Seeds per loss below which no claim about losses is made.
MIN_SEEDS = 3
# Each rule: (claim, column of Table 2, higher is better, how a value reads, what the column means).
RULES: tuple[tuple[str, str, bool, str, str], ...] = (
    ("Highest overall accuracy", "test_f1", True, "test F1 {:.1f} %", "sample-averaged test F1"),
    ("Best on rare classes", "rare_f1", True, "mean F1 {:.1f} % over the rarest third of the classes",
     "rarest-third F1"),
    ("Best across classes", "macro_f1", True, "macro-F1 {:.1f} %", "macro-F1"),
    ("Best ranking of each class's images (threshold-free)", "test_map", True, "macro mAP {:.1f} %", "macro mAP"),
    ("Fastest to 90 % of its final validation F1", "epochs_to_90", False, "{:.0f} epoch(s)", "epochs to 90 %"),
    ("Fastest in training time to 90 % of its final validation F1", "seconds_to_90", False,
     "{:.0f} s of training", "seconds to 90 %"),
    ("Largest area under the validation F1 curve", "f1_auc", True, "mean F1 {:.1f} % over the epochs", "F1 AUC"),
    ("Fewest images with a vanished score gradient", "zero_grad_fraction", False, "{:.1f} % of training images",
     "zero-gradient share"),
)  # fmt: skip
PERCENT = {"test_f1", "test_map", "rare_f1", "macro_f1", "f1_auc", "zero_grad_fraction"}
#: Table 2 columns tested by the bootstrap, and their metric in ``pairwise.csv``.
_LABELS = dict(PAIRWISE_METRICS)
TESTED: dict[str, str] = {
    "test_f1": _LABELS["f1_samples"],
    "test_map": _LABELS["map_macro"],
    "rare_f1": _LABELS["f1_rare"],
    "macro_f1": _LABELS["f1_macro"],
}


def names(items: list[str]) -> str:
    """'A', 'A and B', 'A, B and C'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def comparison(pairwise: pd.DataFrame, metric: str, first: str, second: str) -> pd.Series | None:
    """The pairwise row of ``first`` − ``second`` (signs flipped when stored the other way round), if any."""
    rows = pairwise[pairwise["metric"] == metric]
    forward = rows[(rows["loss_a"] == first) & (rows["loss_b"] == second)]
    if len(forward):
        return forward.iloc[0]
    backward = rows[(rows["loss_a"] == second) & (rows["loss_b"] == first)]
    if not len(backward):
        return None
    row = backward.iloc[0].copy()
    row["difference"], row["ci_low"], row["ci_high"] = -row["difference"], -row["ci_high"], -row["ci_low"]
    return row


def winner_sentence(
    claim: str, values: pd.Series, higher: bool, fmt: str, metric: str, pairwise: pd.DataFrame, alpha: float = ALPHA
) -> str:
    """A winner when it beats the runner-up significantly (Holm), else the group tied with the best; with fewer
    than MIN_SEEDS seeds, no claim about losses, and the comparison between the trained models (or seed means)."""
    ordered = values.sort_values(ascending=not higher, kind="stable")
    best, value = ordered.index[0], fmt.format(ordered.iloc[0])
    if len(ordered) == 1:
        return f"{claim}: {best} ({value}; the only loss compared)."
    seeds = int(pairwise["seeds"].min()) if "seeds" in pairwise and len(pairwise) else 1
    if seeds < MIN_SEEDS:
        kind = "model" if seeds == 1 else "seed mean"
        compared = "between the trained models" if seeds == 1 else "between the seed means, with a seed spread from two"
        return (
            f"{claim}: no claim about losses can be made from {seeds} seed{'s' if seeds > 1 else ''} per loss "
            f"(at least {MIN_SEEDS} are needed to know how far seeds of one loss spread); {compared}, "
            f"{_comparison(ordered, best, value, metric, pairwise, alpha, kind)}"
        )
    return f"{claim}: {_comparison(ordered, best, value, metric, pairwise, alpha, 'loss')}"


def _comparison(
    ordered: pd.Series, best: str, value: str, metric: str, pairwise: pd.DataFrame, alpha: float, kind: str
) -> str:
    """The best and how it compares with the runner-up: ahead significantly, or tied with a group."""
    runner_up = ordered.index[1]
    row = comparison(pairwise, metric, best, runner_up)
    if row is None:
        return f"{best} ({value}; not tested against {runner_up})."
    if row["p_holm"] < alpha and row["difference"] != 0:
        return (
            f"{best} ({value}), ahead of the runner-up {runner_up} by {abs(row['difference']):.1f} points "
            f"(95 % interval {row['ci_low']:+.1f} to {row['ci_high']:+.1f}, Holm p = {row['p_holm']:.2g})."
        )
    tied = [best]
    for loss in ordered.index[1:]:
        other = comparison(pairwise, metric, best, loss)
        if other is None or other["p_holm"] >= alpha:
            tied.append(loss)
    subject = names(tied) + (" are" if len(tied) > 1 else " is")
    noun = {"loss": "", "model": ", one model each", "seed mean": ", as seed means"}[kind]
    return f"{subject} tied within noise{noun} (best {best}, {value}; Holm p ≥ {alpha} against it)."


def guidelines(table2: pd.DataFrame, table1_long: pd.DataFrame, pairwise: pd.DataFrame | None = None) -> list[str]:
    """One sentence per rule, plus the precision/recall trade-off and calibration gain.

    Rules on test metrics consult ``pairwise`` (the bootstrap's table); without it they say they were not tested.
    """
    sentences = []
    for claim, column, higher, fmt, _ in RULES:
        values = table2[column] * (100 if column in PERCENT else 1)
        if column in TESTED and pairwise is not None:
            sentences.append(winner_sentence(claim, values, higher, fmt, TESTED[column], pairwise))
            continue
        target = values.max() if higher else values.min()
        best = names(list(values.index[values == target]))
        sentences.append(f"{claim}: {best} ({fmt.format(target)}; not tested for significance).")
    means = table1_long.pivot(index="metric", columns="loss", values="mean")
    if {"P", "R"} <= set(means.index):
        gap = (means.loc["R"] - means.loc["P"]).sort_values()
        sentences.append(
            f"Most recall-leaning (recall − precision): {gap.index[-1]} ({gap.iloc[-1]:+.1f} points); "
            f"most precision-leaning: {gap.index[0]} ({gap.iloc[0]:+.1f} points)."
        )
    if {CALIBRATED_F1, "F1"} <= set(means.index):
        gain = (means.loc[CALIBRATED_F1] - means.loc["F1"]).sort_values()
        sentences.append(
            f"Thresholds calibrated for sample F1 on validation (the same calibrator for every loss) help "
            f"{gain.index[-1]} most ({gain.iloc[-1]:+.1f} F1 points) and {gain.index[0]} least ({gain.iloc[0]:+.1f})."
        )
    return sentences


def paper_best() -> str:
    """The loss with the paper's highest F1, for comparison."""
    return max(TABLE1, key=lambda loss: TABLE1[loss][2])
