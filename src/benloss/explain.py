"""LRP explanations with zennit (Fig. 1), their conservation and, on the demo, their ground truth.

The composite maps rules by layer name, because the K-Branch CNN has three input layers:

* the first convolution of every branch: ZBox with per-band bounds, the normalised values of raw 0 and
  10000 (reflectance 0 to 1), so each band gets its own relevance;
* every other convolution: ZPlus; every fully connected layer: Epsilon (ε = 1e-6).

BatchNorm is merged into the preceding layers first (zennit's ``SequentialMergeBatchNorm``, with the
left-over ``eps`` zeroed), with the model in ``eval()``. With the composite's hooks in place,
``torch.autograd.grad`` of the raw class score s_c (seeded with s_c itself) with respect to the three branch
inputs returns their relevance directly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import TwoSlopeNorm
from torch import Tensor, nn
from tqdm import tqdm
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import NameMapComposite
from zennit.rules import Epsilon, ZBox, ZPlus

from benloss.atomic import atomic_outputs
from benloss.bands import BAND_GROUPS, RGB, BandStatistics, read_band_statistics
from benloss.data import EncodedSplit
from benloss.losses import LOSS_IDS, build_loss, loss_info
from benloss.models import INPUT_CONVS, BandNormalizer, KBranchCNN
from benloss.nomenclature import classes
from benloss.plotting import save
from benloss.synth import class_region, read_masks
from benloss.train import load_model

log = logging.getLogger(__name__)

REFLECTANCE_MAX = 10000.0
RGB_CHANNELS = [BAND_GROUPS[0].bands.index(band) for band in RGB]
CHECK_PATCHES = 24
#: ``lrp_scores.csv``: relevance_mass/pointing_hit use all twelve bands, the ``_rgb`` ones Fig. 1's RGB map.
SCORE_COLUMNS = ("loss", "patch", "class", "score", "relevance_mass", "region_share", "pointing_hit",
                 "relevance_mass_rgb", "pointing_hit_rgb")  # fmt: skip


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


def composite(model: nn.Module, statistics: BandStatistics) -> NameMapComposite:
    """Name-mapped LRP composite: ZBox on each branch's first conv, ZPlus on other convs, Epsilon on linears."""
    name_map = []
    for group, name in zip(BAND_GROUPS, INPUT_CONVS, strict=True):
        mean, std = (torch.from_numpy(a).view(1, -1, 1, 1) for a in statistics.group_arrays(group))
        name_map.append(((name,), ZBox(low=(0.0 - mean) / std, high=(REFLECTANCE_MAX - mean) / std)))
    convs = tuple(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n not in INPUT_CONVS)
    linears = tuple(n for n, m in model.named_modules() if isinstance(m, nn.Linear))
    name_map += [(convs, ZPlus()), (linears, Epsilon(epsilon=1e-6))]
    return NameMapComposite(name_map=name_map, canonizers=[ExactMergeBatchNorm()])


def relevance(model: KBranchCNN, inputs: tuple[Tensor, ...], class_indices: Tensor, statistics: BandStatistics):
    """Per-branch input relevance of each row's class score, and those scores, in one batched pass."""
    model.eval()
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    with composite(model, statistics).context(model) as modified:
        scores = modified(*leaves)
        selected = torch.zeros_like(scores)
        rows = torch.arange(len(scores))
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
    requested: list[dict], split: EncodedSplit, patches: list[str], masks: dict | None
) -> list[Example]:
    """The configured examples; without a patch, the first test patch (by name) carrying the class and a rarer one."""
    labels = split.labels.astype(bool)
    examples = []
    for item in requested:
        name = item["class"]
        if name not in classes():
            raise ValueError(f"explain: unknown class {name!r}; the BigEarthNet-19 classes are {list(classes())}")
        c = classes().index(name)
        if "patch" in item:
            if item["patch"] not in patches:
                raise ValueError(f"explain: patch {item['patch']} is not in the test split")
            examples.append(Example(patches.index(item["patch"]), item["patch"], name))
            continue
        candidates = [i for i in np.argsort(patches) if labels[i, c]]
        if not candidates:
            raise ValueError(f"explain: no test patch carries {name!r}")

        best = min(candidates, key=lambda i, c=c, name=name: _preference(i, c, name, labels, patches, masks))
        examples.append(Example(int(best), patches[best], name))
    return examples


def _preference(i: int, c: int, name: str, labels: np.ndarray, patches: list[str], masks: dict | None) -> tuple:
    """Sort key of candidate patches: one that also carries a rarer class, and (demo) a mid-sized region."""
    rarer = bool((labels[i] & (labels.sum(0) < labels.sum(0)[c])).any())
    share = class_region(masks[patches[i]], name).mean() if masks else 0.5
    return (not rarer, not 0.15 <= share <= 0.85)


def check_examples(split: EncodedSplit, patches: list[str], n: int = CHECK_PATCHES) -> list[Example]:
    """Ground-truth check set: every true class of the first ``n`` test patches by name."""
    labels = split.labels.astype(bool)
    rows = np.argsort(patches)[:n]
    return [Example(int(i), patches[i], classes()[c]) for i in rows for c in np.flatnonzero(labels[i])]


def region_scores(heatmap: np.ndarray, region: np.ndarray) -> dict:
    """Relevance mass accuracy (share of positive relevance inside), region share and pointing game."""
    positive = np.clip(heatmap, 0, None)
    total = positive.sum()
    return {
        "relevance_mass": float(positive[region].sum() / total) if total > 0 else float("nan"),
        "region_share": float(region.mean()),
        "pointing_hit": bool(region.flat[int(np.argmax(heatmap))]),
    }


def true_colour(bands_10m: np.ndarray) -> np.ndarray:
    """(120, 120, 3) RGB in [0, 1], stretched between the 2nd and 98th percentile of all three bands together
    (one stretch for all channels keeps the colour balance), with a gamma of 1/1.5 to lift dark scenes."""
    rgb = bands_10m[RGB_CHANNELS].astype(np.float64)
    low, high = np.percentile(rgb, [2, 98])
    return (np.clip((rgb - low) / max(high - low, 1e-6), 0, 1) ** (1 / 1.5)).transpose(1, 2, 0)


def _short(name: str, length: int = 16) -> str:
    return name if len(name) <= length else name[: length - 1] + "…"


def heatmap_figure(
    examples: list[Example], images: list[np.ndarray], heatmaps: dict[str, np.ndarray], predictions: dict[str, list],
    true_labels: list[list[str]],
) -> plt.Figure:  # fmt: skip
    """Fig. 1: a row per example, the true-colour image then one heatmap per loss, with a colour bar."""
    losses = list(heatmaps)
    figure, axes = plt.subplots(
        len(examples), len(losses) + 1, figsize=(2.5 * (len(losses) + 1), 3.0 * len(examples) + 0.6), squeeze=False
    )
    for r, example in enumerate(examples):
        axes[r, 0].imshow(images[r])
        axes[r, 0].set_title(f"{_short(example.class_name, 24)}\n{example.patch}", fontsize=6.5)
        axes[r, 0].set_xlabel("true: " + ", ".join(_short(t, 14) for t in true_labels[r]), fontsize=5.5, wrap=True)
        for col, loss in enumerate(losses, start=1):
            heat = heatmaps[loss][r]
            limit = float(np.abs(heat).max()) or 1.0
            image = axes[r, col].imshow(heat, cmap="bwr", norm=TwoSlopeNorm(0.0, -limit, limit))
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
    return figure


def trained_models(results: Path) -> dict[str, Path]:
    """The lowest seed's model of every trained loss, in LOSS_IDS order."""
    found = {}
    for loss in LOSS_IDS:
        candidates = sorted(
            (Path(results) / "models" / loss).glob("seed*/model.pt"), key=lambda p: int(p.parent.name[4:])
        )
        if candidates:
            found[loss] = candidates[0]
    if not found:
        raise FileNotFoundError(f"no trained model under {Path(results) / 'models'}")
    return found


def explain(
    results: Path, encoded: Path, requested: list[dict], out: Path, masks: Path | None = None, threads: int = 1
):
    """Write Fig. 1, the relevance arrays, the conservation table and (with masks) ``lrp_scores.csv``."""
    torch.set_num_threads(max(1, threads))
    results, out = Path(results), Path(out)
    statistics = read_band_statistics(Path(encoded) / "band_statistics.csv")
    normalizer = BandNormalizer(statistics)
    split = EncodedSplit(encoded, "test")
    patches = (Path(encoded) / "test_patches.txt").read_text().split()
    region_maps = read_masks(masks) if masks else None
    figure_examples = choose_examples(requested, split, patches, region_maps)
    checks = check_examples(split, patches) if region_maps else []
    examples = figure_examples + [e for e in checks if e not in figure_examples]
    rows = np.array([e.row for e in examples])
    batch = split.gather(rows)
    inputs = normalizer(batch)
    class_indices = torch.tensor([e.class_index for e in examples])
    heatmaps, predictions, arrays, conservation, scores_rows = {}, {}, {}, [], []
    for loss, path in tqdm(trained_models(results).items(), desc="explain", unit=" models"):
        model, config = load_model(path)
        parts, scores = relevance(model, inputs, class_indices, statistics)
        heat = rgb_heatmap(parts[0])
        whole = all_band_heatmap(parts)
        heatmaps[loss] = heat[: len(figure_examples)]
        arrays |= {
            f"{loss}_rgb": heat,
            **{f"{loss}_{g.name}": p.numpy() for g, p in zip(BAND_GROUPS, parts, strict=True)},
        }
        with torch.no_grad():
            logits = model(*inputs)
        rule = build_loss(loss, class_frequencies=np.ones(len(classes())), **config.loss_params)
        predicted = rule.predict(logits)
        predictions[loss] = [
            [classes()[c] for c in np.flatnonzero(p)] for p in predicted[: len(figure_examples)].numpy()
        ]
        totals = sum(p.sum(dim=(1, 2, 3)) for p in parts)
        for index, (example, score, total) in enumerate(zip(examples, scores.tolist(), totals.tolist(), strict=True)):
            conservation.append({"loss": loss_info(loss).abbreviation, "patch": example.patch,
                                 "class": example.class_name, "score": score, "relevance_sum": total,
                                 "ratio": total / score if score else float("nan")})  # fmt: skip
            if region_maps is not None:
                region = class_region(region_maps[example.patch], example.class_name)
                rgb = region_scores(heat[index], region)
                scores_rows.append(
                    {"loss": loss_info(loss).abbreviation, "patch": example.patch, "class": example.class_name,
                     "score": score, **region_scores(whole[index], region),
                     "relevance_mass_rgb": rgb["relevance_mass"], "pointing_hit_rgb": rgb["pointing_hit"]}
                )  # fmt: skip
    labels = split.labels[rows[: len(figure_examples)]].astype(bool)
    true_labels = [[classes()[c] for c in np.flatnonzero(row)] for row in labels]
    images = [true_colour(batch["10m"][i].numpy()) for i in range(len(figure_examples))]
    figure = heatmap_figure(figure_examples, images, heatmaps, predictions, true_labels)
    scores_frame = pd.DataFrame(scores_rows, columns=list(SCORE_COLUMNS))
    outputs = (out / "figures/lrp_heatmaps.png", out / "figures/lrp_heatmaps.pdf", out / "explain/relevance.npz",
               out / "tables/lrp_scores.csv", out / "explain/conservation.csv")  # fmt: skip
    with atomic_outputs(*outputs) as (png, pdf, npz, scores_csv, conservation_csv):
        save(figure, png, pdf)
        meta = [
            {"patch": e.patch, "class": e.class_name, "in_figure": i < len(figure_examples)}
            for i, e in enumerate(examples)
        ]
        np.savez_compressed(npz, examples=np.array(json.dumps(meta)), **arrays)
        scores_frame.to_csv(scores_csv, index=False)
        pd.DataFrame(conservation).to_csv(conservation_csv, index=False)
    log.info("explained %d examples with %d models", len(examples), len(heatmaps))
    return scores_frame
