"""Conservation of LRP relevance: how much of the explained score the input relevance holds, per loss.

One row per explanation (``explain/conservation.csv``): the decision score explained, the sum of its input
relevance over all twelve bands, and their ratio. A composite that conserves relevance gives ratios near 1 for
every loss; ``summarise_conservation`` gives, per loss, the median and the 5th and 95th percentile of the ratio and
the share of explanations within ``TOLERANCE`` of 1. A score that does not depend on the input (SML's only class
in the support scores 1 whatever the logits) has nothing to distribute: its row is marked ``constant``, its ratio
left empty, and the summary counts such rows apart. Torch-free: the report reads it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benloss.facts.loss_catalog import loss_info

#: One row per explanation.
CONSERVATION_COLUMNS = ("loss", "patch", "class", "explains", "score", "constant", "relevance_sum", "ratio")
#: One row per loss.
SUMMARY_COLUMNS = ("loss", "explains", "explanations", "constant", "median", "p5", "p95", "within_tolerance")
#: How far from the explained score the input relevance may lie and still count as conserved.
TOLERANCE = 0.05


def explained_score(loss: str) -> str:
    """What a loss's explanation explains, for class c: the score it decides by (``heads.DecisionHead``)."""
    return loss_info(loss).shift_free_score or "z"


def conservation_row(
    loss: str, patch: str, class_name: str, score: float, relevance_sum: float, constant: bool = False
) -> dict:
    """One explanation's row; the ratio is NaN where the explained score is 0 or does not depend on the input."""
    ratio = relevance_sum / score if score and not constant else float("nan")
    values = (loss_info(loss).abbreviation, patch, class_name, explained_score(loss), score, constant, relevance_sum,
              ratio)  # fmt: skip
    return dict(zip(CONSERVATION_COLUMNS, values, strict=True))


def summarise_conservation(rows: pd.DataFrame) -> pd.DataFrame:
    """Per loss, in the rows' order: what it explains, how many explanations and how many of them have a constant
    score, then over the others the median, 5th and 95th percentile of the ratio and the share whose ratio lies
    within ``TOLERANCE`` of 1 (a NaN ratio, for a score of 0, counts as not)."""
    summary = []
    for loss, group in rows.groupby("loss", sort=False):
        constant = group["constant"].to_numpy(dtype=bool)
        ratio = group["ratio"].to_numpy(dtype=np.float64)[~constant]
        finite = ratio[np.isfinite(ratio)]
        p5, median, p95 = np.percentile(finite, [5, 50, 95]) if len(finite) else (np.nan,) * 3
        within = float(np.mean(np.abs(ratio - 1) <= TOLERANCE)) if len(ratio) else float("nan")
        values = (loss, group["explains"].iloc[0], len(group), int(constant.sum()), median, p5, p95, within)
        summary.append(dict(zip(SUMMARY_COLUMNS, values, strict=True)))
    return pd.DataFrame(summary, columns=list(SUMMARY_COLUMNS))
