"""LRP explanations of each loss's decision score (Fig. 1), their conservation, and their scores against maps.

One call explains the models of one architecture (``benloss.architectures``); one that LRP does not explain soundly
(``Architecture.not_explained``: the vision transformer) is refused. ``benloss.explanation.lrp`` holds the composite
(ZBox on the architecture's input layers and ZPlus on the other convolutions, without biases; on the fully
connected layers LRP-ε that spreads the bias's share over the inputs; BatchNorm merged; residual sums split in
proportion, ``benloss.explanation.canonizers``) and ``benloss.explanation.heads`` the explained score: the score
each loss decides by (the logit z_c; z_c − mean_c z for RL, z_c − τ(z) for SML), as a linear head on the logits.
ZBox's per-band bounds are the training split's 0.1st and 99.9th percentile (``benloss.explanation.zbox_bounds``),
normalised like the inputs; ``explain/zbox_bounds.csv`` counts the explained pixels outside them, and
``explain/conservation.csv`` compares each explanation's input relevance with its explained score.

Where the encoded test split has reference maps, every loss explains the same stratified sample of test
patches (``explain.per_class`` per class) and ``benloss.explanation.scores`` scores the explanations.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm import tqdm

from benloss.architectures import DEFAULT_ARCHITECTURE, Architecture, architecture
from benloss.atomic import atomic_outputs
from benloss.data.encoded import read_patch_names, read_reference_maps, reference_maps_path
from benloss.errors import InputError
from benloss.evaluation.results import by_model
from benloss.explanation.conservation import CONSERVATION_COLUMNS, conservation_row, summarise_conservation
from benloss.explanation.figure import (
    Example,
    LossMaps,
    all_band_heatmap,
    heatmap_figure,
    rgb_heatmap,
    rgb_share,
    true_colour,
)
from benloss.explanation.heads import constant_scores, decision_head
from benloss.explanation.lrp import input_relevance
from benloss.explanation.scores import EXAMPLE_COLUMNS, region_scores, stratified_sample, summarise
from benloss.explanation.zbox_bounds import BoxBounds, bounds_table, fixed_bounds, zbox_bounds
from benloss.facts.bands import BAND_GROUPS, BandStatistics, read_band_statistics
from benloss.facts.loss_catalog import loss_info
from benloss.facts.nomenclature import classes
from benloss.layout import ENCODED_FILES, EXPLANATION_FILES, architecture_of
from benloss.report.figures import lrp_score_chart
from benloss.report.plotting import save
from benloss.training.batches import EncodedSplit
from benloss.training.losses import MultiLabelLoss, build_rule
from benloss.training.models import BandNormalizer
from benloss.training.train import choose_device, load_model, load_own_rule

log = logging.getLogger(__name__)

#: Explanations per LRP pass: bounds memory whatever ``explain.per_class`` is.
LRP_BATCH = 32


def input_bounds(
    architecture_id: str, statistics: BandStatistics, bounds: BoxBounds | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, tuple[Tensor, Tensor]]:  # fmt: skip
    """ZBox's bounds for each input layer of the architecture: ``bounds`` (raw, fixed 0 to 10000 when None),
    normalised like the inputs, the groups the layer reads concatenated in its channel order, as (1, channels, 1, 1)
    tensors on ``device``."""
    bounds = bounds or fixed_bounds()
    groups = {group.name: group for group in BAND_GROUPS}

    def normalised(name: str) -> tuple[Tensor, Tensor]:
        mean, std = (torch.from_numpy(a) for a in statistics.group_arrays(groups[name]))
        low, high = (torch.from_numpy(a) for a in bounds.group_arrays(groups[name]))
        return (low - mean) / std, (high - mean) / std

    found = {}
    for layer, read in architecture(architecture_id).input_layers.items():
        low, high = zip(*(normalised(name) for name in read), strict=True)
        found[layer] = tuple(torch.cat(b).view(1, -1, 1, 1).to(device) for b in (low, high))
    return found


def relevance(
    model: nn.Module, inputs: tuple[Tensor, ...], class_indices: Tensor, statistics: BandStatistics,
    bounds: BoxBounds | None = None, rule: MultiLabelLoss | None = None, architecture_id: str = DEFAULT_ARCHITECTURE,
) -> tuple[list[Tensor], Tensor]:  # fmt: skip
    """Per-group input relevance of each row's decision score under ``rule`` (the logit z_c without one), and
    those scores, in one batched pass, for a model of ``architecture_id``."""
    layers = input_bounds(architecture_id, statistics, bounds, inputs[0].device)
    return input_relevance(model, inputs, rule, class_indices, layers)


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


def models_by_loss(models: Sequence[Path]) -> dict[str, Path]:
    """The given ``model.pt`` files by loss, in ``LOSS_IDS`` order: one model a loss (Fig. 1 shows one seed)."""
    found: dict[str, Path] = {}
    for loss, _, path in by_model(models):
        if loss in found:
            raise InputError(f"two models for {loss} ({found[loss]}, {path}): explain takes one seed per loss")
        found[loss] = path
    return found


def explained_architecture(models: Sequence[Path]) -> Architecture:
    """The one architecture of the given models (read from their paths), which LRP must explain."""
    by_architecture: dict[str, Path] = {}
    for path in models:
        by_architecture.setdefault(architecture_of(path), path)
    if len(by_architecture) > 1:
        listed = ", ".join(f"{path} ({arch})" for arch, path in by_architecture.items())
        raise InputError(f"models of {len(by_architecture)} architectures ({listed}): explain runs once per "
                         "architecture")  # fmt: skip
    ((arch_id, path),) = by_architecture.items()
    try:
        found = architecture(arch_id)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    if not found.explained:
        raise InputError(f"{path}: {found.name} is not explained: {found.not_explained}")
    return found


@dataclass
class _LossExplanations:
    """What one model's pass over the examples yields: Fig. 1's rows (maps, shares, scores, predictions, each
    band group's relevance) and the conservation and score tables' rows."""

    all_bands: list[np.ndarray] = field(default_factory=list)
    rgb: list[np.ndarray] = field(default_factory=list)
    rgb_share: list[np.ndarray] = field(default_factory=list)
    figure_scores: list[np.ndarray] = field(default_factory=list)
    figure_constant: list[np.ndarray] = field(default_factory=list)
    parts: list[list[np.ndarray]] = field(default_factory=list)
    predictions: list[list[str]] = field(default_factory=list)
    conservation: list[dict] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)

    def figure_maps(self) -> LossMaps:
        return LossMaps(np.concatenate(self.all_bands), np.concatenate(self.rgb), np.concatenate(self.rgb_share),
                        np.concatenate(self.figure_scores), np.concatenate(self.figure_constant),
                        self.predictions)  # fmt: skip


def explain_model(
    loss: str, path: Path, architecture_id: str, examples: list[Example], n_figure: int, split: EncodedSplit,
    normalizer: BandNormalizer, statistics: BandStatistics, bounds: BoxBounds, maps: np.ndarray | None,
    progress: tqdm, device: torch.device,
) -> _LossExplanations:  # fmt: skip
    """LRP of one trained model (of ``architecture_id``) of the decision score over ``examples`` in batches; the
    first ``n_figure`` are Fig. 1's, the rest scored."""
    model, config = load_model(path, device)
    if config.architecture != architecture_id:
        raise InputError(f"{path}: a {config.architecture} model in a {architecture_id} folder")
    rule = build_rule(loss, len(classes()), load_own_rule(path), **config.loss_params)
    found = _LossExplanations()
    for start in range(0, len(examples), LRP_BATCH):
        chunk = examples[start : start + LRP_BATCH]
        inputs = tuple(x.to(device) for x in normalizer(split.gather(np.array([e.row for e in chunk]))))
        targets = torch.tensor([e.class_index for e in chunk], device=device)
        parts, scores = relevance(model, inputs, targets, statistics, bounds, rule, architecture_id)
        with torch.no_grad():
            logits = model(*inputs)
        constant = constant_scores(decision_head(rule, logits, targets)).cpu().numpy()
        totals = sum(p.sum(dim=(1, 2, 3)) for p in parts)
        whole = all_band_heatmap(parts)
        in_figure = max(0, min(len(chunk), n_figure - start))
        if in_figure:
            shown = [p[:in_figure] for p in parts]
            predicted = rule.predict(logits[:in_figure]).cpu().numpy()
            found.all_bands.append(whole[:in_figure])
            found.rgb.append(rgb_heatmap(shown[0]))
            found.rgb_share.append(rgb_share(shown))
            found.figure_scores.append(scores[:in_figure].cpu().numpy())
            found.figure_constant.append(constant[:in_figure])
            found.parts.append([p.cpu().numpy() for p in shown])
            found.predictions += [[classes()[c] for c in np.flatnonzero(p)] for p in predicted]
        for i, (example, score, total) in enumerate(zip(chunk, scores.tolist(), totals.tolist(), strict=True)):
            found.conservation.append(
                conservation_row(loss, example.patch, example.class_name, score, total, bool(constant[i]))
            )
            if start + i >= n_figure and maps is not None:
                row = {"loss": loss_info(loss).abbreviation, "patch": example.patch, "class": example.class_name,
                       "score": score}  # fmt: skip
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
    trained = models_by_loss(models)
    arch = explained_architecture(list(trained.values()))
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
    found = {}
    with tqdm(total=len(trained) * len(examples), desc="explain", unit=" explanations", mininterval=2) as progress:
        for loss, path in trained.items():
            found[loss] = explain_model(loss, path, arch.id, examples, len(figure_examples), split, normalizer,
                                        statistics, bounds, maps, progress, target)  # fmt: skip
    rows = np.array([e.row for e in figure_examples])
    batch = split.gather(rows)
    true_labels = [[classes()[c] for c in np.flatnonzero(row)] for row in split.labels[rows].astype(bool)]
    images = [true_colour(batch["10m"][i].numpy()) for i in range(len(figure_examples))]
    figure = heatmap_figure(figure_examples, images, None if maps is None else [maps[r] for r in rows],
                            {loss: f.figure_maps() for loss, f in found.items()}, true_labels)  # fmt: skip
    scores = pd.DataFrame([r for f in found.values() for r in f.scores], columns=list(EXAMPLE_COLUMNS))
    summary = summarise(scores, seed=seed)
    conservation = pd.DataFrame([r for f in found.values() for r in f.conservation], columns=list(CONSERVATION_COLUMNS))
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
        conservation.to_csv(conservation_csv, index=False)
        box = bounds_table(split, np.unique([e.row for e in examples]), bounds, LRP_BATCH)
        box.to_csv(bounds_csv, index=False)
    for row in summarise_conservation(conservation).itertuples():
        log.info("conservation of %s (explains %s): median %.3f, 5th to 95th percentile %.3f to %.3f, %.0f %% within "
                 "5 %% (%d of %d with a constant score, not counted)", row.loss, row.explains, row.median, row.p5,
                 row.p95, 100 * row.within_tolerance, row.constant, row.explanations)  # fmt: skip
    log.info("explained %d examples with %d %s models; ZBox bounds: %s; %d of %d explained pixels above raw 10000, "
             "%d outside the bounds", len(examples), len(found), arch.name, bounds.source, box["above_10000"].sum(),
             box["pixels"].sum(), box["outside_bounds"].sum())  # fmt: skip
    return scores
