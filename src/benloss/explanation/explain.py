"""LRP explanations with zennit (Fig. 1), their conservation, and their scores against reference maps.

The composite maps rules by layer name, because the K-Branch CNN has three input layers:

* the first convolution of every branch: ZBox with per-band bounds, the normalised minimum and maximum of
  each band over the training split (``training_band_statistics.csv`` of the encoded folder); without that
  file, the normalised values of raw 0 and 10000 (reflectance 0 to 1), which L2A's bright pixels (cloud,
  snow, roofs) exceed: ``explain/zbox_bounds.csv`` counts the explained pixels either bound leaves out;
* every other convolution: ZPlus; every fully connected layer: Epsilon (ε = 1e-6).

BatchNorm is merged into the preceding layers first (zennit's ``SequentialMergeBatchNorm``, with the
left-over ``eps`` zeroed), with the model in ``eval()``. With the composite's hooks in place,
``torch.autograd.grad`` of the raw class score s_c (seeded with s_c itself) with respect to the three branch
inputs returns their relevance directly.

Where the encoded test split has reference maps, every loss explains the same stratified sample of test
patches (``explain.per_class`` per class) and ``benloss.explanation.scores`` scores the explanations.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import TwoSlopeNorm
from matplotlib.patches import Patch
from torch import Tensor, nn
from tqdm import tqdm
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import NameMapComposite
from zennit.rules import Epsilon, ZBox, ZPlus

from benloss.atomic import atomic_outputs
from benloss.data.encoded import read_patch_names, read_reference_maps, reference_maps_path
from benloss.errors import InputError
from benloss.evaluation.results import by_model
from benloss.explanation.scores import (
    EXAMPLE_COLUMNS,
    NO_CLASS,
    region_scores,
    stratified_sample,
    summarise,
)
from benloss.explanation.zbox_bounds import BoxBounds, bounds_table, fixed_bounds, zbox_bounds
from benloss.facts.bands import BAND_GROUPS, RGB, BandStatistics, read_band_statistics
from benloss.facts.loss_catalog import loss_info
from benloss.facts.nomenclature import classes
from benloss.layout import ENCODED_FILES, EXPLANATION_FILES
from benloss.report.figures import lrp_score_chart
from benloss.report.plotting import CLASS_COLOURS, save
from benloss.training.batches import EncodedSplit
from benloss.training.losses import build_rule
from benloss.training.models import INPUT_CONVS, BandNormalizer, KBranchCNN
from benloss.training.train import choose_device, load_model, load_own_rule

log = logging.getLogger(__name__)

RGB_CHANNELS = [BAND_GROUPS[0].bands.index(band) for band in RGB]
#: Explanations per LRP pass: bounds memory whatever ``explain.per_class`` is.
LRP_BATCH = 32


@dataclass(frozen=True)
class Example:
    """One explanation: a test patch (row of the encoded test split) and the class whose score is explained."""

    row: int
    patch: str
    class_name: str

    @property
    def class_index(self) -> int:
        return classes().index(self.class_name)


class ExactMergeBatchNorm(SequentialMergeBatchNorm):
    """zennit's BatchNorm merge, also zeroing the left-over layer's ``eps`` while merged.

    zennit resets a merged BatchNorm to unit variance but keeps its ``eps``, so it still divides by
    sqrt(1 + eps): negligible for PyTorch's 1e-5, but with TensorFlow's 1e-3 it shifts every score by
    about 0.05 % per layer. Zeroing it makes the merged model give the original scores.
    """

    def register(self, linears, batch_norm) -> None:
        self.original_eps = batch_norm.eps
        super().register(linears, batch_norm)
        batch_norm.eps = 0.0

    def remove(self) -> None:
        super().remove()
        self.batch_norm.eps = self.original_eps


def composite(model: nn.Module, statistics: BandStatistics, bounds: BoxBounds | None = None) -> NameMapComposite:
    """Name-mapped LRP composite: ZBox on each branch's first conv, ZPlus on other convs, Epsilon on linears.

    The box bounds are ``bounds`` (raw, fixed 0 to 10000 when None), normalised like the inputs.
    """
    bounds = bounds or fixed_bounds()
    name_map = []
    device = next(model.parameters()).device
    for group, name in zip(BAND_GROUPS, INPUT_CONVS, strict=True):
        mean, std = (torch.from_numpy(a).view(1, -1, 1, 1).to(device) for a in statistics.group_arrays(group))
        low, high = (torch.from_numpy(a).view(1, -1, 1, 1).to(device) for a in bounds.group_arrays(group))
        name_map.append(((name,), ZBox(low=(low - mean) / std, high=(high - mean) / std)))
    convs = tuple(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n not in INPUT_CONVS)
    linears = tuple(n for n, m in model.named_modules() if isinstance(m, nn.Linear))
    name_map += [(convs, ZPlus()), (linears, Epsilon(epsilon=1e-6))]
    return NameMapComposite(name_map=name_map, canonizers=[ExactMergeBatchNorm()])


def relevance(
    model: KBranchCNN, inputs: tuple[Tensor, ...], class_indices: Tensor, statistics: BandStatistics,
    bounds: BoxBounds | None = None,
):  # fmt: skip
    """Per-branch input relevance of each row's class score, and those scores, in one batched pass."""
    model.eval()
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    with composite(model, statistics, bounds).context(model) as modified:
        scores = modified(*leaves)
        selected = torch.zeros_like(scores)
        rows = torch.arange(len(scores), device=scores.device)
        selected[rows, class_indices] = scores[rows, class_indices]
        gradients = torch.autograd.grad(scores, leaves, grad_outputs=selected)
    # zennit's rule hooks hand back relevance in place of gradients: the input "gradient" is the relevance.
    return [g.detach() for g in gradients], scores[rows, class_indices].detach()


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


def choose_examples(
    requested: list[dict], split: EncodedSplit, patches: list[str], maps: np.ndarray | None
) -> list[Example]:
    """The configured examples; without a patch, the first test patch (by name) carrying the class and a rarer one."""
    labels = split.labels.astype(bool)
    examples = []
    for item in requested:
        name = item["class"]
        if name not in classes():
            raise InputError(f"explain: unknown class {name!r}; the BigEarthNet-19 classes are {list(classes())}")
        c = classes().index(name)
        if "patch" in item:
            if item["patch"] not in patches:
                raise InputError(f"explain: patch {item['patch']} is not in the test split")
            examples.append(Example(patches.index(item["patch"]), item["patch"], name))
            continue
        candidates = [i for i in np.argsort(patches) if labels[i, c]]
        if not candidates:
            raise InputError(f"explain: no test patch carries {name!r}")
        best = min(candidates, key=lambda i, c=c: _preference(i, c, labels, maps))
        examples.append(Example(int(best), patches[best], name))
    return examples


def _preference(i: int, c: int, labels: np.ndarray, maps: np.ndarray | None) -> tuple:
    """Sort key of candidate patches: one that also carries a rarer class, and (with maps) a mid-sized region."""
    rarer = bool((labels[i] & (labels.sum(0) < labels.sum(0)[c])).any())
    share = float((maps[i] == c).mean()) if maps is not None else 0.5
    return (not rarer, not 0.15 <= share <= 0.85)


def scored_examples(split: EncodedSplit, patches: list[str], maps: np.ndarray, per_class: int, seed: int):
    """The stratified sample every loss explains and is scored on (``lrp_scores.stratified_sample``)."""
    return [
        Example(row, patches[row], classes()[c]) for row, c in stratified_sample(split.labels, maps, per_class, seed)
    ]


def true_colour(bands_10m: np.ndarray) -> np.ndarray:
    """(120, 120, 3) RGB in [0, 1], stretched between the 2nd and 98th percentile of all three bands together
    (one stretch for all channels keeps the colour balance), with a gamma of 1/1.5 to lift dark scenes."""
    rgb = bands_10m[RGB_CHANNELS].astype(np.float64)
    low, high = np.percentile(rgb, [2, 98])
    return (np.clip((rgb - low) / max(high - low, 1e-6), 0, 1) ** (1 / 1.5)).transpose(1, 2, 0)


def _short(name: str, length: int = 16) -> str:
    return name if len(name) <= length else name[: length - 1] + "…"


def reference_map_image(mask: np.ndarray) -> np.ndarray:
    """(120, 120, 3) RGB of a reference map: each class in its colour, no class in light grey."""
    palette = np.vstack([CLASS_COLOURS, np.full((256 - len(CLASS_COLOURS), 3), 0.9)])
    return palette[np.asarray(mask)]


def heatmap_figure(
    examples: list[Example], images: list[np.ndarray], maps: list[np.ndarray] | None, heatmaps: dict[str, np.ndarray],
    predictions: dict[str, list], true_labels: list[list[str]],
) -> plt.Figure:  # fmt: skip
    """Fig. 1: a row per example: the true-colour image, the reference map (when there are maps) with a class
    legend, then one heatmap per loss (the explained class's region outlined), with a colour bar."""
    losses = list(heatmaps)
    first = 1 if maps is None else 2
    columns = len(losses) + first
    figure, axes = plt.subplots(
        len(examples), columns, figsize=(2.5 * columns, 2.6 * len(examples) + 0.6), squeeze=False
    )
    for r, example in enumerate(examples):
        axes[r, 0].imshow(images[r])
        axes[r, 0].set_title(f"{_short(example.class_name, 24)}\n{example.patch}", fontsize=6.5)
        axes[r, 0].set_xlabel("true: " + ", ".join(_short(t, 14) for t in true_labels[r]), fontsize=5.5, wrap=True)
        if maps is not None:
            axes[r, 1].imshow(reference_map_image(maps[r]), interpolation="nearest")
            axes[r, 1].set_title("reference map", fontsize=8)
            share = float((maps[r] == example.class_index).mean())
            axes[r, 1].set_xlabel(f"{_short(example.class_name, 20)}: {100 * share:.0f} %", fontsize=5.5)
        for col, loss in enumerate(losses, start=first):
            heat = heatmaps[loss][r]
            limit = float(np.abs(heat).max()) or 1.0
            image = axes[r, col].imshow(heat, cmap="bwr", norm=TwoSlopeNorm(0.0, -limit, limit))
            if maps is not None and 0 < share < 1:  # the explained class's region, outlined
                axes[r, col].contour(maps[r] == example.class_index, levels=[0.5], colors="k", linewidths=0.4)
            axes[r, col].set_title(loss_info(loss).abbreviation, fontsize=9)
            predicted = predictions[loss][r]
            axes[r, col].set_xlabel(
                "pred: "
                + (", ".join(_short(p, 12) for p in predicted[:3]) + ("…" if len(predicted) > 3 else "") or "none"),
                fontsize=5.5,
            )
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    bar = figure.colorbar(image, ax=axes, shrink=0.6, location="right", ticks=[-limit, 0, limit])
    bar.ax.set_yticklabels(["negative", "0", "positive"])
    bar.set_label("relevance (each map scaled to its own maximum)")
    if maps is not None:
        shown = sorted({int(v) for m in maps for v in np.unique(m)})
        handles = [Patch(color=CLASS_COLOURS[v] if v != NO_CLASS else (0.9, 0.9, 0.9),
                         label=classes()[v] if v != NO_CLASS else "no class") for v in shown]  # fmt: skip
        figure.legend(handles=handles, loc="upper center", ncol=4, fontsize=7, frameon=False, title="reference map",
                      title_fontsize=7, bbox_to_anchor=(0.45, 0.06))  # fmt: skip
    return figure


def models_by_loss(models: Sequence[Path]) -> dict[str, Path]:
    """The given ``model.pt`` files by loss, in ``LOSS_IDS`` order: one model a loss (Fig. 1 shows one seed)."""
    found: dict[str, Path] = {}
    for loss, _, path in by_model(models):
        if loss in found:
            raise InputError(f"two models for {loss} ({found[loss]}, {path}): explain takes one seed per loss")
        found[loss] = path
    return found


@dataclass
class _LossExplanations:
    """What one model's pass over the examples yields: the figure rows' maps and predictions, and table rows."""

    rgb: list[np.ndarray] = field(default_factory=list)
    parts: list[list[np.ndarray]] = field(default_factory=list)
    predictions: list[list[str]] = field(default_factory=list)
    conservation: list[dict] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)


def explain_model(
    loss: str, path: Path, examples: list[Example], n_figure: int, split: EncodedSplit, normalizer: BandNormalizer,
    statistics: BandStatistics, bounds: BoxBounds, maps: np.ndarray | None, progress: tqdm, device: torch.device,
) -> _LossExplanations:  # fmt: skip
    """LRP of one trained model over ``examples`` in batches; the first ``n_figure`` are Fig. 1's, the rest scored."""
    model, config = load_model(path, device)
    rule = build_rule(loss, len(classes()), load_own_rule(path), **config.loss_params)
    found, abbreviation = _LossExplanations(), loss_info(loss).abbreviation
    for start in range(0, len(examples), LRP_BATCH):
        chunk = examples[start : start + LRP_BATCH]
        inputs = tuple(x.to(device) for x in normalizer(split.gather(np.array([e.row for e in chunk]))))
        targets = torch.tensor([e.class_index for e in chunk], device=device)
        parts, scores = relevance(model, inputs, targets, statistics, bounds)
        totals = sum(p.sum(dim=(1, 2, 3)) for p in parts)
        whole = all_band_heatmap(parts)
        in_figure = max(0, min(len(chunk), n_figure - start))
        if in_figure:
            with torch.no_grad():
                predicted = rule.predict(model(*(x[:in_figure] for x in inputs))).cpu().numpy()
            found.rgb.append(rgb_heatmap(parts[0][:in_figure]))
            found.parts.append([p[:in_figure].cpu().numpy() for p in parts])
            found.predictions += [[classes()[c] for c in np.flatnonzero(p)] for p in predicted]
        for i, (example, score, total) in enumerate(zip(chunk, scores.tolist(), totals.tolist(), strict=True)):
            row = {"loss": abbreviation, "patch": example.patch, "class": example.class_name, "score": score}
            found.conservation.append(
                {**row, "relevance_sum": total, "ratio": total / score if score else float("nan")}
            )
            if start + i >= n_figure and maps is not None:
                found.scores.append({**row, **region_scores(whole[i], maps[example.row] == example.class_index)})
        progress.update(len(chunk))
    return found


def explain(
    models: Sequence[Path], encoded: Path, requested: list[dict], out: Path, per_class: int = 5, seed: int = 0,
    threads: int = 1, device: str = "auto",
) -> pd.DataFrame:  # fmt: skip
    """Write Fig. 1, its relevance arrays, the conservation and ZBox-bound tables, and the LRP scores (per
    explanation and summarised; header only where the test split has no reference maps). Returns the
    per-explanation scores."""
    torch.set_num_threads(max(1, threads))
    target = choose_device(device)
    encoded, out = Path(encoded), Path(out)
    statistics = read_band_statistics(encoded / ENCODED_FILES["band_statistics"])
    bounds = zbox_bounds(encoded)
    normalizer = BandNormalizer(statistics)
    split = EncodedSplit(encoded, "test")
    patches = read_patch_names(encoded, "test")
    maps = read_reference_maps(encoded, "test", len(patches))
    figure_examples = choose_examples(requested, split, patches, maps)
    if maps is None:
        log.warning("%s absent: the explanations are not scored against reference maps",
                    reference_maps_path(encoded, "test"))  # fmt: skip
        scored = []
    else:
        scored = scored_examples(split, patches, maps, per_class, seed)
    examples = figure_examples + scored
    trained = models_by_loss(models)
    found = {}
    with tqdm(total=len(trained) * len(examples), desc="explain", unit=" explanations", mininterval=2) as progress:
        for loss, path in trained.items():
            found[loss] = explain_model(loss, path, examples, len(figure_examples), split, normalizer, statistics,
                                        bounds, maps, progress, target)  # fmt: skip
    rows = np.array([e.row for e in figure_examples])
    batch = split.gather(rows)
    true_labels = [[classes()[c] for c in np.flatnonzero(row)] for row in split.labels[rows].astype(bool)]
    images = [true_colour(batch["10m"][i].numpy()) for i in range(len(figure_examples))]
    figure = heatmap_figure(
        figure_examples, images, None if maps is None else [maps[r] for r in rows],
        {loss: np.concatenate(f.rgb) for loss, f in found.items()},
        {loss: f.predictions for loss, f in found.items()}, true_labels,
    )  # fmt: skip
    scores = pd.DataFrame([r for f in found.values() for r in f.scores], columns=list(EXAMPLE_COLUMNS))
    summary = summarise(scores, seed=seed)
    arrays = {}
    for loss, f in found.items():
        arrays[f"{loss}_rgb"] = np.concatenate(f.rgb)
        for g, group in enumerate(BAND_GROUPS):
            arrays[f"{loss}_{group.name}"] = np.concatenate([parts[g] for parts in f.parts])
    outputs = [out / name for name in EXPLANATION_FILES.values()]
    with atomic_outputs(*outputs) as (png, pdf, npz, summary_csv, scores_csv, chart_png, chart_pdf, conservation_csv,
                                      bounds_csv):  # fmt: skip
        save(figure, png, pdf)
        meta = [{"patch": e.patch, "class": e.class_name} for e in figure_examples]
        np.savez_compressed(npz, examples=np.array(json.dumps(meta)), **arrays)
        summary.to_csv(summary_csv, index=False)
        scores.to_csv(scores_csv, index=False)
        save(lrp_score_chart(summary), chart_png, chart_pdf)
        pd.DataFrame([r for f in found.values() for r in f.conservation]).to_csv(conservation_csv, index=False)
        box = bounds_table(split, np.unique([e.row for e in examples]), bounds, LRP_BATCH)
        box.to_csv(bounds_csv, index=False)
    log.info("explained %d examples with %d models; ZBox bounds: %s; %d of %d explained pixels above raw 10000, "
             "%d outside the bounds", len(examples), len(found), bounds.source, box["above_10000"].sum(),
             box["pixels"].sum(), box["outside_bounds"].sum())  # fmt: skip
    return scores
