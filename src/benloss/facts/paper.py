"""The one home of the paper's published numbers (Yessou, Sumbul & Demir, IGARSS 2020)."""

from __future__ import annotations

import pandas as pd

from benloss.facts.loss_catalog import PAPER_LOSS_IDS

CITATION = (
    'H. Yessou, G. Sumbul and B. Demir, "A Comparative Study of Deep Learning Loss Functions for Multi-Label '
    'Remote Sensing Image Classification", IGARSS 2020, arXiv:2009.13935'
)
#: Table 1 of the paper: sample-averaged precision, recall and F1 in % on the BigEarthNet-19 test split.
#: Only the paper's seven losses have numbers; later additions (ASL, ZLPR) have none.
TABLE1: dict[str, tuple[float, float, float]] = {
    "cel": (75.2, 58.2, 62.3),
    "fl": (72.2, 57.8, 61.1),
    "wcel": (76.2, 64.5, 66.2),
    "hal": (75.9, 60.4, 64.2),
    "hl": (76.6, 59.9, 64.1),
    "rl": (58.0, 76.5, 62.9),
    "sml": (70.7, 74.4, 69.9),
}
#: Table 2 of the paper, its criteria in order; each mark H (high), M (medium), L (low) or NA (not applied).
TABLE2_CRITERIA: tuple[str, ...] = (
    "overall_accuracy",
    "class_imbalance",
    "convexity_differentiability",
    "learning_efficiency",
)
TABLE2: dict[str, tuple[str, str, str, str]] = {
    "cel": ("L", "L", "M", "M"),
    "fl": ("L", "H", "M", "L"),
    "wcel": ("M", "H", "M", "L"),
    "hal": ("M", "L", "NA", "M"),
    "hl": ("M", "L", "H", "M"),
    "rl": ("L", "L", "NA", "H"),
    "sml": ("H", "M", "M", "H"),
}
#: Where the paper's text and the mathematics disagree, per loss.
TEXT_VERSUS_MATHS: dict[str, str] = {
    "hal": (
        "The paper calls HAL non-convex and discontinuous and marks its convexity NA. The Hamming loss of thresholded "
        "predictions is piecewise constant, but what is trained is its smooth expected value under Bernoulli "
        "predictions, a differentiable (if non-convex) surrogate."
    ),
    "rl": (
        "The paper calls RL non-convex and discontinuous and marks its convexity NA. Its hinge max(0, α + z_v − z_u) "
        "is a maximum of affine functions of the scores, hence convex and continuous; it is only non-differentiable "
        "at the hinge."
    ),
}
#: The paper's training set-up.
EPOCHS = 80
LEARNING_RATE = 1e-4
WIDTH = 1024


def table1_frame() -> pd.DataFrame:
    """Table 1 of the paper: rows P, R, F1, one column per paper loss (ids) in the paper's order."""
    index = pd.Index(["P", "R", "F1"], name="metric")
    return pd.DataFrame({loss: TABLE1[loss] for loss in PAPER_LOSS_IDS}, index=index)
