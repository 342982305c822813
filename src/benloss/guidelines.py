"""Guidelines written from the measured numbers, each by a rule stated here, never as fixed prose."""

from __future__ import annotations

import pandas as pd

from benloss.paper import TABLE1

# Each rule: (statement template, column of Table 2, higher is better, what the column means).
RULES: tuple[tuple[str, str, bool, str], ...] = (
    ("Highest overall accuracy: {best} (test F1 {value:.1f} %).", "test_f1", True, "sample-averaged test F1"),
    ("Best on rare classes: {best} (mean F1 {value:.1f} % over the rarest third of the classes).", "rare_f1", True,
     "rarest-third F1"),
    ("Best across classes: {best} (macro-F1 {value:.1f} %).", "macro_f1", True, "macro-F1"),
    ("Fastest to 90 % of its final validation F1: {best} ({value:.0f} epoch(s)).", "epochs_to_90", False,
     "epochs to 90 %"),
    ("Largest area under the validation F1 curve: {best} (mean F1 {value:.1f} % over the epochs).", "f1_auc", True,
     "F1 AUC"),
    ("Fewest images with a vanished score gradient: {best} ({value:.1f} % of training images).",
     "zero_grad_fraction", False, "zero-gradient share"),
)  # fmt: skip
PERCENT = {"test_f1", "rare_f1", "macro_f1", "f1_auc", "zero_grad_fraction"}


def guidelines(table2: pd.DataFrame, table1_long: pd.DataFrame) -> list[str]:
    """One sentence per rule, ties named together, plus the precision/recall trade-off and calibration gain."""
    sentences = []
    for template, column, higher, _ in RULES:
        values = table2[column]
        target = values.max() if higher else values.min()
        best = ", ".join(values.index[values == target])
        scale = 100 if column in PERCENT else 1
        sentences.append(template.format(best=best, value=target * scale))
    means = table1_long.pivot(index="metric", columns="loss", values="mean")
    if {"P", "R"} <= set(means.index):
        gap = (means.loc["R"] - means.loc["P"]).sort_values()
        sentences.append(
            f"Most recall-leaning (recall − precision): {gap.index[-1]} ({gap.iloc[-1]:+.1f} points); "
            f"most precision-leaning: {gap.index[0]} ({gap.iloc[0]:+.1f} points)."
        )
    calibrated = "F1 samples, calibrated thresholds"
    if {calibrated, "F1"} <= set(means.index):
        gain = (means.loc[calibrated] - means.loc["F1"]).sort_values()
        sentences.append(
            f"Per-class thresholds tuned on validation help {gain.index[-1]} most ({gain.iloc[-1]:+.1f} F1 points) "
            f"and {gain.index[0]} least ({gain.iloc[0]:+.1f})."
        )
    return sentences


def paper_best() -> str:
    """The loss with the paper's highest F1, for comparison."""
    return max(TABLE1, key=lambda loss: TABLE1[loss][2])
