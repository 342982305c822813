"""One colour and marker per loss, and one colour per class, used by every figure of the project."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from benloss.facts.loss_catalog import LOSS_IDS
from benloss.facts.nomenclature import classes

# The eight Okabe-Ito colours (colour-blind safe) plus grey, one per loss in LOSS_IDS order.
_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442", "#999999")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")
LOSS_STYLE: dict[str, dict[str, str]] = {
    loss: {"color": colour, "marker": marker} for loss, colour, marker in zip(LOSS_IDS, _COLOURS, _MARKERS, strict=True)
}

#: RGB in [0, 1] per BigEarthNet-19 class (official order): tab20's ten dark colours, then its light ones.
CLASS_COLOURS: np.ndarray = np.array(plt.get_cmap("tab20").colors)[[*range(0, 20, 2), *range(1, 20, 2)]][
    : len(classes())
]


def save(figure: plt.Figure, png, pdf=None) -> None:
    """Save as 300 dpi PNG (and vector PDF) and close."""
    figure.savefig(png, dpi=300, bbox_inches="tight", format="png")
    if pdf is not None:
        figure.savefig(pdf, bbox_inches="tight", format="pdf")
    plt.close(figure)
