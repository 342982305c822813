"""The training loss, sample F1 and macro mAP of a model moved along directions in weight space.

Every point θ + Σ_k a_k d_k is evaluated on one fixed set of images, in eval mode: BatchNorm normalises with the
running statistics the model was trained to, held fixed while the kernels move, and dropout is off. That is what
Li et al.'s code does, and the same for every loss, so the surfaces of different losses differ only through their
weights; recomputing the statistics per point would instead measure a differently normalised network at every
point (and depend on the batch). Points are evaluated in the model's own precision (float32), with no autocast,
whatever precision it was trained in. The perturbed kernels are restored exactly afterwards, as is the model's
mode; nothing else is touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from benloss.evaluation.metrics import MultiLabelMetrics
from benloss.evaluation.ranking import ranking_summary
from benloss.landscape.directions import assign, flatten, perturbed_names, perturbed_parameters
from benloss.training.losses import MultiLabelLoss

#: What every point reports: the model's own training loss, sample F1 of its own rule, macro mAP of its ranking score.
METRICS = ("loss", "f1_samples", "map_macro")
#: Images per forward pass.
BATCH_SIZE = 256


def batches(tensors: Sequence[Tensor], batch_size: int = BATCH_SIZE):
    """The same consecutive rows of every tensor, ``batch_size`` at a time."""
    for start in range(0, len(tensors[0]), batch_size):
        yield tuple(tensor[start : start + batch_size] for tensor in tensors)


@torch.no_grad()
def scores_of(model: nn.Module, inputs: Sequence[Tensor], batch_size: int = BATCH_SIZE) -> Tensor:
    """The model's raw scores (N, C) for every image."""
    return torch.cat([model(*batch) for batch in batches(inputs, batch_size)])


def measure(scores: Tensor, labels: Tensor, loss_fn: MultiLabelLoss, rule: MultiLabelLoss) -> dict[str, float]:
    """The training loss (mean over the images), sample F1 of the rule's predictions and macro mAP of its ranking
    scores; mAP is NaN where scores overflowed."""
    metrics = MultiLabelMetrics(labels.shape[1])
    metrics.update(rule.predict(scores), labels)
    ranking = rule.ranking_scores(scores).double().cpu().numpy()
    defined = bool(np.isfinite(ranking).all())
    map_macro = ranking_summary(ranking, labels.cpu().numpy())["map_macro"] if defined else float("nan")
    return {"loss": float(loss_fn(scores, labels)), "f1_samples": metrics.compute()["f1_samples"],
            "map_macro": map_macro}  # fmt: skip


@torch.no_grad()
def evaluate_points(
    model: nn.Module, directions: Sequence[Tensor], points: np.ndarray, inputs: Sequence[Tensor], labels: Tensor,
    loss_fn: MultiLabelLoss, rule: MultiLabelLoss, description: str = "landscape", batch_size: int = BATCH_SIZE,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Every metric (M,) at θ + Σ_k points[m, k] · directions[k] for the M rows of ``points`` (M, K)."""
    parameters = perturbed_parameters(model)
    origin = flatten(dict(model.named_parameters()), perturbed_names(model))
    stacked = torch.stack(list(directions)).to(origin)
    was_training = model.training
    model.eval()
    results = {name: np.empty(len(points)) for name in METRICS}
    try:
        for m, point in enumerate(tqdm(points, desc=description, mininterval=5)):
            offset = torch.as_tensor(point, dtype=origin.dtype, device=origin.device) @ stacked
            assign(parameters, origin + offset)
            for name, value in measure(scores_of(model, inputs, batch_size), labels, loss_fn, rule).items():
                results[name][m] = value
    finally:
        assign(parameters, origin)
        model.train(was_training)
    return results


def loss_surface(
    model: nn.Module, directions: Sequence[Tensor], coordinates_x: np.ndarray, coordinates_y: np.ndarray,
    inputs: Sequence[Tensor], labels: Tensor, loss_fn: MultiLabelLoss, rule: MultiLabelLoss,
    description: str = "surface", batch_size: int = BATCH_SIZE,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Every metric on the grid θ + a·d1 + b·d2, shape (len(x), len(y)): entry [i, j] is at a = x[i], b = y[j]."""
    a, b = np.meshgrid(np.asarray(coordinates_x, float), np.asarray(coordinates_y, float), indexing="ij")
    points = np.stack([a.ravel(), b.ravel()], axis=1)
    flat = evaluate_points(model, directions, points, inputs, labels, loss_fn, rule, description, batch_size)
    return {name: values.reshape(a.shape) for name, values in flat.items()}


def loss_slices(
    model: nn.Module, directions: Sequence[Tensor], coordinates: np.ndarray, inputs: Sequence[Tensor], labels: Tensor,
    loss_fn: MultiLabelLoss, rule: MultiLabelLoss, description: str = "slices", batch_size: int = BATCH_SIZE,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Every metric along each direction alone, shape (K, S): entry [k, s] is at θ + coordinates[s] · d_k."""
    coordinates = np.asarray(coordinates, float)
    k = len(directions)
    points = np.zeros((k * len(coordinates), k))
    for index in range(k):
        points[index * len(coordinates) : (index + 1) * len(coordinates), index] = coordinates
    flat = evaluate_points(model, directions, points, inputs, labels, loss_fn, rule, description, batch_size)
    return {name: values.reshape(k, len(coordinates)) for name, values in flat.items()}
