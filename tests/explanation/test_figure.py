"""Fig. 1: all-band and RGB maps, one colour scale per example, captions that fit."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.image import AxesImage
from matplotlib.text import Text

from benloss.explanation.figure import (
    FONT_SIZE,
    Example,
    LossMaps,
    all_band_heatmap,
    heatmap_figure,
    rgb_heatmap,
    rgb_share,
    wrap,
)
from benloss.facts.bands import BAND_GROUPS
from benloss.facts.loss_catalog import LOSS_IDS
from benloss.facts.nomenclature import classes

#: The report's width in pixels (``body { max-width: 1100px }`` of its template).
REPORT_PIXELS = 1100


def random_parts(n: int = 2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, len(gr.bands), gr.size, gr.size, generator=g) for gr in BAND_GROUPS]


def test_the_all_band_map_spreads_coarse_pixels_over_their_10m_pixels():
    parts = random_parts()
    got = all_band_heatmap(parts)
    p10, p20, p60 = (p.double().numpy() for p in parts)
    for n, y, x in itertools.product(range(2), (0, 7, 59, 119), (0, 5, 64, 118)):
        expected = p10[n, :, y, x].sum() + p20[n, :, y // 2, x // 2].sum() / 4 + p60[n, :, y // 6, x // 6].sum() / 36
        assert got[n, y, x] == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(got.sum((1, 2)), sum(p.double().sum((1, 2, 3)) for p in parts).numpy(), rtol=1e-5)


def test_the_rgb_map_and_its_share_of_the_relevance():
    parts = [torch.zeros(1, 4, 120, 120), torch.zeros(1, 6, 60, 60), torch.zeros(1, 2, 20, 20)]
    parts[0][0, 2, 0, 0] = 3.0  # B04
    parts[0][0, 3, 0, 0] = -5.0  # B08: not RGB
    parts[1][0, 0, 0, 0] = 2.0
    assert rgb_heatmap(parts[0])[0, 0, 0] == 3.0 and rgb_heatmap(parts[0]).sum() == 3.0
    assert rgb_share(parts)[0] == pytest.approx(3 / 10)  # of Σ|R| = 3 + 5 + 2


def fake_figure(losses: tuple[str, ...], examples: int = 2, maps: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    names = list(classes())
    chosen = [Example(i, f"S2A_MSIL2A_20170613T101031_{i}_{i + 40}", names[i]) for i in range(examples)]
    found = {
        loss: LossMaps(rng.normal(size=(examples, 120, 120)) * (k + 1), rng.normal(size=(examples, 120, 120)),
                       rng.uniform(size=examples), rng.normal(size=examples), np.arange(examples) == 1,
                       [names[3:9], []][:examples])
        for k, loss in enumerate(losses)
    }  # fmt: skip
    images = [rng.uniform(size=(120, 120, 3)) for _ in range(examples)]
    masks = [np.where(rng.uniform(size=(120, 120)) < 0.5, i, 255).astype(np.uint8) for i in range(examples)]
    truth = [names[:6], names[10:12]][:examples]
    return heatmap_figure(chosen, images, masks if maps else None, found, truth), found


def test_every_map_of_an_example_shares_one_colour_scale():
    figure, found = fake_figure(("cel", "rl", "sml"))
    for r in range(2):
        images = [
            image for axis in figure.axes for image in axis.get_images()
            if image.get_cmap().name == "bwr" and axis.get_subplotspec().rowspan.start // 2 == r
        ]  # fmt: skip
        assert len(images) == 2 * 3  # all bands and RGB, for each loss
        values = np.concatenate([m[r].ravel() for f in found.values() for m in (f.all_bands, f.rgb)])
        limit = np.percentile(np.abs(values), 99)
        for image in images:
            assert (image.norm.vmin, image.norm.vmax) == pytest.approx((-limit, limit))
    plt.close(figure)


def text_boxes(figure) -> list[tuple[str, object]]:
    renderer = figure.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in figure.findobj(Text)
            if t.get_visible() and t.get_text().strip()]  # fmt: skip


@pytest.mark.parametrize("maps", [True, False])
def test_captions_do_not_overlap_and_stay_legible_at_the_reports_width(maps):
    figure, _ = fake_figure(LOSS_IDS, maps=maps)  # every loss: the widest figure
    figure.canvas.draw()
    boxes = text_boxes(figure)
    assert any("pred:" in text for text, _ in boxes) and any(text.startswith("true:") for text, _ in boxes)
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert not box_a.overlaps(box_b), (a, b)
    images = [image for axis in figure.axes for image in axis.get_images() if isinstance(image, AxesImage)]
    for (text, box), image in itertools.product(boxes, images):  # no caption covers a map
        assert not box.overlaps(image.get_window_extent()), text
    assert min(t.get_fontsize() for t in figure.findobj(Text) if t.get_text().strip()) >= FONT_SIZE
    width = figure.get_tightbbox(figure.canvas.get_renderer()).width  # inches, as saved with bbox_inches="tight"
    assert FONT_SIZE / 72 * REPORT_PIXELS / width >= 8  # the smallest text at least 8 px high in the report
    plt.close(figure)


def test_wrapped_captions_break_after_spaces_and_underscores():
    assert wrap("S2A_MSIL2A_20170613T101031_26_57", 12) == "S2A_MSIL2A_\n20170613T101031_\n26_57"
    assert wrap("Complex cultivation patterns", 20) == "Complex cultivation\npatterns"
    assert wrap("Pastures", 20) == "Pastures"
