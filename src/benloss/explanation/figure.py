"""Fig. 1: per example, every loss's relevance over all twelve bands and over the RGB bands, on one scale.

Each example (a patch and the class explained) takes two rows: relevance summed over all twelve bands (a 20 m or
60 m pixel's relevance spread evenly over its 10 m pixels, as the scores against reference maps count it), and
over B04, B03 and B02 alone, the slice the paper shows. Every map of an example shares one colour scale, the 99th
percentile of |relevance| over all of them, so a faint map looks faint; the first column holds the true-colour
image and the reference map.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.gridspec import GridSpec
from matplotlib.patches import Patch
from torch import Tensor

from benloss.explanation.conservation import explained_score
from benloss.explanation.scores import NO_CLASS
from benloss.facts.bands import BAND_GROUPS, RGB
from benloss.facts.loss_catalog import loss_info
from benloss.facts.nomenclature import classes
from benloss.report.plotting import CLASS_COLOURS

RGB_CHANNELS = [BAND_GROUPS[0].bands.index(band) for band in RGB]
#: Percentile of |relevance| over an example's maps that its colour scale ends at.
SCALE_PERCENTILE = 99
#: Inches per map, and the smallest font: legible at the report's width (about 1,100 px) for up to 9 losses.
PANEL_INCHES = 1.15
FONT_SIZE = 7
#: Characters per caption line, and class names listed under a map before "+k more".
LINE_CHARACTERS = 20
LISTED_CLASSES = 4


@dataclass(frozen=True)
class Example:
    """One explanation: a test patch (row of the encoded test split) and the class whose score is explained."""

    row: int
    patch: str
    class_name: str

    @property
    def class_index(self) -> int:
        return classes().index(self.class_name)


@dataclass
class LossMaps:
    """One loss's part of Fig. 1, one entry per example: both maps, the RGB bands' share of Σ|relevance|, the
    explained score, whether it is constant (``heads.constant_scores``) and the classes the loss predicts."""

    all_bands: np.ndarray
    rgb: np.ndarray
    rgb_share: np.ndarray
    scores: np.ndarray
    constant: np.ndarray
    predicted: list[list[str]]


def rgb_heatmap(relevance_10m: Tensor) -> np.ndarray:
    """Relevance of B04, B03 and B02 summed per pixel: (N, 120, 120)."""
    return relevance_10m[:, RGB_CHANNELS].sum(1).cpu().numpy()


def all_band_heatmap(parts: list[Tensor]) -> np.ndarray:
    """Relevance of all twelve bands per 10 m pixel: coarser pixels share theirs evenly among the 10 m pixels."""
    total = np.zeros((parts[0].shape[0], 120, 120))
    for part in parts:
        summed = part.sum(1).cpu().numpy()
        factor = 120 // summed.shape[-1]
        total += np.kron(summed, np.ones((factor, factor))) / factor**2
    return total


def rgb_share(parts: list[Tensor]) -> np.ndarray:
    """Share of Σ|relevance| over all bands and pixels that B04, B03 and B02 hold, per row: (N,)."""
    rgb = parts[0][:, RGB_CHANNELS].abs().sum(dim=(1, 2, 3))
    total = sum(part.abs().sum(dim=(1, 2, 3)) for part in parts)
    return (rgb / total.clamp(min=1e-30)).cpu().numpy()


def row_scale(maps: list[np.ndarray]) -> float:
    """An example's colour scale: the ``SCALE_PERCENTILE`` of |relevance| over all its maps (1 if all are 0)."""
    return float(np.percentile(np.abs(np.concatenate([m.ravel() for m in maps])), SCALE_PERCENTILE)) or 1.0


def true_colour(bands_10m: np.ndarray) -> np.ndarray:
    """(120, 120, 3) RGB in [0, 1], stretched between the 2nd and 98th percentile of all three bands together
    (one stretch for all channels keeps the colour balance), with a gamma of 1/1.5 to lift dark scenes."""
    rgb = bands_10m[RGB_CHANNELS].astype(np.float64)
    low, high = np.percentile(rgb, [2, 98])
    return (np.clip((rgb - low) / max(high - low, 1e-6), 0, 1) ** (1 / 1.5)).transpose(1, 2, 0)


def reference_map_image(mask: np.ndarray) -> np.ndarray:
    """(120, 120, 3) RGB of a reference map: each class in its colour, no class in light grey."""
    palette = np.vstack([CLASS_COLOURS, np.full((256 - len(CLASS_COLOURS), 3), 0.9)])
    return palette[np.asarray(mask)]


def wrap(text: str, width: int = LINE_CHARACTERS, separators: str = " _") -> str:
    """``text`` in lines of at most ``width`` characters, broken after spaces or underscores (longer words whole)."""
    lines, line = [], ""
    for token in _tokens(text, separators):
        if line and len(line) + len(token.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += token
    return "\n".join([*lines, line.rstrip()])


def _tokens(text: str, separators: str) -> list[str]:
    """``text`` cut after each separator, the separators kept."""
    tokens, start = [], 0
    for i, character in enumerate(text):
        if character in separators:
            tokens.append(text[start : i + 1])
            start = i + 1
    return [*tokens, text[start:]] if start < len(text) else tokens


def class_list(label: str, names: list[str]) -> str:
    """``label`` and up to ``LISTED_CLASSES`` class names, one per line (shortened), then "+k more"; "none"."""
    if not names:
        return f"{label} none"
    shown = [n if len(n) <= LINE_CHARACTERS else n[: LINE_CHARACTERS - 1] + "…" for n in names[:LISTED_CLASSES]]
    more = [f"+{len(names) - LISTED_CLASSES} more"] if len(names) > LISTED_CLASSES else []
    return "\n".join([label, *shown, *more])


def heatmap_figure(
    examples: list[Example], images: list[np.ndarray], maps: list[np.ndarray] | None, losses: dict[str, LossMaps],
    true_labels: list[list[str]],
) -> plt.Figure:  # fmt: skip
    """Fig. 1: two rows per example (all twelve bands; RGB), a column per loss (keys: loss ids), the image and the
    reference map (when there are maps) first, one colour bar per example."""
    columns = len(losses) + 1
    figure = plt.figure(figsize=(PANEL_INCHES * columns + 0.9, 2 * len(examples) * (PANEL_INCHES + 0.75) + 0.9),
                        layout="constrained")  # fmt: skip
    grid = figure.add_gridspec(2 * len(examples), columns + 1, width_ratios=[1] * columns + [0.08])
    for r, example in enumerate(examples):
        top, bottom = 2 * r, 2 * r + 1
        _image_panels(figure, grid, top, example, images[r], None if maps is None else maps[r], true_labels[r])
        limit = row_scale([m for f in losses.values() for m in (f.all_bands[r], f.rgb[r])])
        norm = TwoSlopeNorm(0.0, -limit, limit)
        region = None if maps is None else maps[r] == example.class_index
        for col, (loss, found) in enumerate(losses.items(), start=1):
            upper, lower = figure.add_subplot(grid[top, col]), figure.add_subplot(grid[bottom, col])
            image = upper.imshow(found.all_bands[r], cmap="bwr", norm=norm)
            lower.imshow(found.rgb[r], cmap="bwr", norm=norm)
            if region is not None and 0 < region.mean() < 1:  # the explained class's region, outlined
                for axis in (upper, lower):
                    axis.contour(region, levels=[0.5], colors="k", linewidths=0.4)
            upper.set_title(f"{loss_info(loss).abbreviation}\nexplains {explained_score(loss)}", fontsize=FONT_SIZE)
            constant = "\n(constant)" if found.constant[r] else ""
            upper.set_xlabel(f"score {found.scores[r]:.3g}{constant}", fontsize=FONT_SIZE)
            lower.set_xlabel(f"RGB: {100 * found.rgb_share[r]:.0f} % of Σ|R|\n" + class_list("pred:",
                             found.predicted[r]), fontsize=FONT_SIZE)  # fmt: skip
            if col == 1:
                upper.set_ylabel("all 12 bands", fontsize=FONT_SIZE)
                lower.set_ylabel("RGB (B04+B03+B02)", fontsize=FONT_SIZE)
            for axis in (upper, lower):
                axis.set_xticks([])
                axis.set_yticks([])
        bar = figure.colorbar(image, cax=figure.add_subplot(grid[top : bottom + 1, -1]), ticks=[-limit, 0, limit])
        bar.ax.tick_params(labelsize=FONT_SIZE)
        bar.ax.set_yticklabels([f"{-limit:.2g}", "0", f"{limit:.2g}"])
        bar.set_label(f"relevance per 10 m pixel\n(±{SCALE_PERCENTILE}th pct of |R|)", fontsize=FONT_SIZE)
    if maps is not None:
        shown = sorted({int(v) for m in maps for v in np.unique(m)})
        handles = [Patch(color=CLASS_COLOURS[v] if v != NO_CLASS else (0.9, 0.9, 0.9),
                         label=classes()[v] if v != NO_CLASS else "no class") for v in shown]  # fmt: skip
        figure.legend(handles=handles, loc="outside lower center", ncol=min(4, columns), fontsize=FONT_SIZE,
                      frameon=False, title="reference map", title_fontsize=FONT_SIZE)  # fmt: skip
    return figure


def _image_panels(
    figure: plt.Figure,
    grid: GridSpec,
    top: int,
    example: Example,
    image: np.ndarray,
    mask: np.ndarray | None,
    true_labels: list[str],
) -> None:
    """The first column: the true-colour image over the reference map (or over the true labels, without maps)."""
    upper, lower = figure.add_subplot(grid[top, 0]), figure.add_subplot(grid[top + 1, 0])
    upper.imshow(image)
    upper.set_title(f"{wrap(example.class_name)}\n{wrap(example.patch)}", fontsize=FONT_SIZE)
    truth = class_list("true:", true_labels)
    if mask is None:
        upper.set_xlabel(truth, fontsize=FONT_SIZE)
        lower.set_axis_off()
    else:
        upper.set_xlabel("true colour", fontsize=FONT_SIZE)
        lower.imshow(reference_map_image(mask), interpolation="nearest")
        share = float((mask == example.class_index).mean())
        lower.set_title(f"reference map:\nexplained class {100 * share:.0f} %", fontsize=FONT_SIZE)
        lower.set_xlabel(truth, fontsize=FONT_SIZE)
    for axis in (upper, lower):
        axis.set_xticks([])
        axis.set_yticks([])
