"""One trained model's landscape: its surfaces, its training trajectory, its curvature, written to one folder.

Every loss is measured alike: on the same training images (``images`` of them, drawn with ``seed``), along random
directions drawn from the same seed (only their filter normalisation follows each model's weights), on grids of
the same size. Two surfaces: over two random filter-normalised directions, from −``span`` to ``span``; and over the
plane of the trajectory's first two principal components, which reaches ``PCA_MARGIN`` times the furthest snapshot
along each axis, both ways, so the trajectory's far side is seen too. The PCA plane needs two snapshots that differ
from the final weights: with fewer the step fails (there is no plane to draw) rather than quietly showing a random
one under that name.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from benloss.atomic import atomic_outputs
from benloss.errors import InputError
from benloss.facts.bands import read_band_statistics
from benloss.landscape.curvature import convex_share, hessian_extremes, sharpness
from benloss.landscape.directions import TrajectoryPlane, flatten, perturbed_names, principal_plane, random_direction
from benloss.landscape.surface import BATCH_SIZE, evaluate_points, loss_slices, loss_surface, measure, scores_of
from benloss.layout import ENCODED_FILES, LANDSCAPE_FILES, SNAPSHOTS
from benloss.training.batches import EncodedSplit
from benloss.training.losses import MultiLabelLoss, build_loss, build_rule
from benloss.training.models import BandNormalizer
from benloss.training.train import choose_device, class_counts_from_csv, load_model, load_own_rule

log = logging.getLogger(__name__)

#: The PCA grid's half-width along each axis, in multiples of the furthest snapshot's coordinate on it.
PCA_MARGIN = 1.25
#: The 1D slices are sampled this many times as finely as a surface's axis.
SLICE_REFINEMENT = 2


@dataclass(frozen=True)
class Landscape:
    """A landscape as read back: the arrays of ``landscape.npz`` and the summary of ``landscape.json``."""

    arrays: dict[str, np.ndarray]
    summary: dict


def check_settings(grid: int, span: float, images: int, radius: float, iterations: int) -> None:
    """Reject settings that give no landscape; an odd grid puts the trained weights at its centre."""
    if grid < 3 or grid % 2 == 0:
        raise InputError(f"landscape grid must be odd and at least 3 (the trained weights at its centre), got {grid}")
    if not span > 0 or not radius > 0:
        raise InputError(f"landscape span and radius must be positive, got {span} and {radius}")
    if images < 1 or iterations < 1:
        raise InputError(f"landscape images and iterations must be at least 1, got {images} and {iterations}")


def training_images(n_train: int, images: int, seed: int) -> np.ndarray:
    """Sorted rows of ``images`` training images (all of them if the split is smaller), the same for every loss."""
    if images >= n_train:
        if images > n_train:
            log.warning("landscape: the training split has %d images, fewer than the %d asked for; using all",
                        n_train, images)  # fmt: skip
        return np.arange(n_train)
    return np.sort(np.random.default_rng([seed]).choice(n_train, size=images, replace=False))


def read_displacement(path: Path, final: dict[str, Tensor], names: list[str], origin: Tensor) -> tuple[int, Tensor]:
    """A snapshot's epoch and its kernels' displacement θ_t − θ_T from the final weights (``origin``, flat)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: snapshot not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not {"epoch", "state_dict"} <= set(state):
        raise InputError(f"{path}: not a weight snapshot (a dict of epoch and state_dict)")
    weights = state["state_dict"]
    bad = [n for n in names if n not in weights or weights[n].shape != final[n].shape]
    if bad:
        raise InputError(f"{path}: its weights do not fit the final model ({bad[0]} missing or of another shape)")
    return int(state["epoch"]), flatten(weights, names).to(origin) - origin


def read_trajectory(
    paths: Sequence[Path], final: dict[str, Tensor], names: list[str], epochs: int, folder: Path
) -> tuple[np.ndarray, Tensor]:
    """The trajectory's epochs and displacements (T, P), by epoch, ending at the final weights (appended at
    ``epochs`` unless a snapshot holds them); fails naming ``folder`` without two snapshots that differ from the
    final weights. One snapshot is in memory at a time beside the rows."""
    origin = flatten(final, names)
    rows = torch.zeros(len(paths) + 1, len(origin), dtype=origin.dtype)
    found = []
    for row, path in zip(rows, paths, strict=False):
        epoch, displacement = read_displacement(path, final, names, origin)
        row.copy_(displacement)
        found.append(epoch)
    moved = int(rows.any(dim=1).sum())
    if moved < 2:
        raise InputError(f"{folder}: the training trajectory's plane needs at least two snapshots that differ from "
                         f"the final model, found {moved}; keep them more often (landscape.snapshots)")  # fmt: skip
    if moved < len(paths):  # a snapshot holds the final weights: no row of its own for them
        rows = rows[: len(paths)]
    else:
        found.append(epochs)
    order = np.argsort(found, kind="stable")
    in_order = bool((order == np.arange(len(order))).all())
    return np.asarray(found)[order], rows if in_order else rows[torch.from_numpy(order)]


def training_batch(encoded: Path, rows: np.ndarray, device: torch.device) -> tuple[tuple[Tensor, ...], Tensor]:
    """The normalised band groups and the labels of the training images ``rows``, on ``device``."""
    batch = {k: v.to(device) for k, v in EncodedSplit(encoded, "train").gather(rows).items()}
    normalizer = BandNormalizer(read_band_statistics(encoded / ENCODED_FILES["band_statistics"])).to(device)
    return tuple(normalizer(batch)), batch["labels"]


@dataclass
class Probe:
    """One model measured on fixed images with its loss and rule, and how long each part took."""

    model: nn.Module
    inputs: tuple[Tensor, ...]
    labels: Tensor
    loss_fn: MultiLabelLoss
    rule: MultiLabelLoss
    batch_size: int
    seconds: dict[str, float] = field(default_factory=dict)

    def surface(self, prefix: str, directions: list[Tensor], x: np.ndarray, y: np.ndarray) -> dict:
        """``<prefix>_x``, ``<prefix>_y`` and ``<prefix>_<metric>`` of the surface over ``directions``."""
        started = time.perf_counter()
        surface = loss_surface(self.model, directions, x, y, self.inputs, self.labels, self.loss_fn, self.rule,
                               f"{prefix} surface", self.batch_size)  # fmt: skip
        self.seconds[f"{prefix}_surface"] = time.perf_counter() - started
        return {f"{prefix}_x": x, f"{prefix}_y": y} | {f"{prefix}_{k}": v for k, v in surface.items()}


def trajectory_arrays(probe: Probe, plane: TrajectoryPlane, epochs: np.ndarray, grid: int) -> dict[str, np.ndarray]:
    """The trajectory, the loss beneath it, and the surface over its plane, ``PCA_MARGIN`` times its reach."""
    started = time.perf_counter()
    device = probe.labels.device
    directions = [d.to(device) for d in plane.directions]
    beneath = evaluate_points(probe.model, directions, plane.coordinates, probe.inputs, probe.labels, probe.loss_fn,
                              probe.rule, "trajectory", probe.batch_size)  # fmt: skip
    probe.seconds["trajectory"] = time.perf_counter() - started
    extent = PCA_MARGIN * np.abs(plane.coordinates).max(axis=0)
    axes = [np.linspace(-reach, reach, grid) for reach in extent]
    return {"trajectory": plane.coordinates, "trajectory_epochs": epochs, "trajectory_loss": beneath["loss"],
            "explained": plane.explained} | probe.surface("pca", directions, *axes)  # fmt: skip


def random_arrays(probe: Probe, directions: list[Tensor], grid: int, span: float, radius: float) -> dict:
    """The surface over two random directions from −``span`` to ``span``, and the slices along each, which hold
    0 and ±``radius`` among their coordinates."""
    axis = np.linspace(-span, span, grid)
    arrays = probe.surface("random", directions, axis, axis)
    started = time.perf_counter()
    coordinates = np.unique(np.r_[np.linspace(-span, span, SLICE_REFINEMENT * (grid - 1) + 1), -radius, 0, radius])
    slices = loss_slices(probe.model, directions, coordinates, probe.inputs, probe.labels, probe.loss_fn, probe.rule,
                         "slices", probe.batch_size)  # fmt: skip
    probe.seconds["slices"] = time.perf_counter() - started
    return arrays | {"slice_coordinates": coordinates} | {f"slice_{k}": v for k, v in slices.items()}


def spacing(axis: np.ndarray) -> float:
    """A grid axis's spacing."""
    return float(axis[1] - axis[0])


def write_landscape(
    model_path: Path, snapshot_paths: Sequence[Path], encoded: Path, class_counts: Path, out: Path, grid: int = 25,
    span: float = 1.0, images: int = 512, seed: int = 0, radius: float = 0.5, iterations: int = 20,
    device: str = "cpu", batch_size: int = BATCH_SIZE,
) -> dict:  # fmt: skip
    """Measure one model's landscape and write ``LANDSCAPE_FILES`` to ``out``; returns the summary."""
    started = time.perf_counter()
    check_settings(grid, span, images, radius, iterations)
    model_path, encoded, class_counts, out = Path(model_path), Path(encoded), Path(class_counts), Path(out)
    for path in (model_path, class_counts, encoded / ENCODED_FILES["band_statistics"]):
        if not path.is_file():
            raise InputError(f"{path}: not found")
    torch_device = choose_device(device)
    model, config = load_model(model_path, torch_device)
    names = perturbed_names(model)
    final = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    epochs, displacements = read_trajectory(snapshot_paths, final, names, config.epochs, model_path.parent / SNAPSHOTS)
    n_train = EncodedSplit(encoded, "train").n_images
    rows = training_images(n_train, images, seed)
    inputs, labels = training_batch(encoded, rows, torch_device)
    loss_fn = build_loss(config.loss, class_counts=class_counts_from_csv(class_counts), n_images=n_train,
                         **config.loss_params).to(torch_device)  # fmt: skip
    rule = build_rule(config.loss, labels.shape[1], load_own_rule(model_path), **config.loss_params).to(torch_device)
    perturbed = sum(final[n].numel() for n in names)
    log.info("landscape of %s (%s, seed %d): %d perturbed weights, %d training images, %d × %d grids, %d snapshots",
             model_path, config.loss, config.seed, perturbed, len(rows), grid, grid, len(epochs))  # fmt: skip

    probe = Probe(model, inputs, labels, loss_fn, rule, batch_size)
    centre = measure(scores_of(model, inputs, batch_size), labels, loss_fn, rule)
    plane = principal_plane(displacements)
    del displacements
    arrays = trajectory_arrays(probe, plane, epochs, grid)
    generator = torch.Generator().manual_seed(seed)
    arrays |= random_arrays(probe, [random_direction(model, generator) for _ in range(2)], grid, span, radius)
    clock = time.perf_counter()
    extremes = hessian_extremes(model, loss_fn, inputs, labels, iterations, generator, batch_size)
    probe.seconds["hessian"] = time.perf_counter() - clock
    probe.seconds["total"] = time.perf_counter() - started

    evaluations = len(epochs) + 2 * grid * grid + arrays["slice_loss"].size
    evaluating = sum(probe.seconds[k] for k in ("trajectory", "pca_surface", "random_surface", "slices"))
    summary = {
        "loss": config.loss,
        "architecture": config.architecture,
        "seed": config.seed,
        "settings": {"grid": grid, "span": span, "images": images, "seed": seed, "radius": radius,
                     "iterations": iterations, "batch_size": batch_size, "device": str(torch_device)},
        "images": len(rows),
        "perturbed_weights": int(perturbed),
        "snapshot_epochs": [int(e) for e in epochs],
        "explained": [float(v) for v in plane.explained],
        "pca_extent": [float(arrays["pca_x"][-1]), float(arrays["pca_y"][-1])],
        "centre": centre,
        "convex_share_random": convex_share(arrays["random_loss"], spacing(arrays["random_x"])),
        "convex_share_pca": convex_share(arrays["pca_loss"], (spacing(arrays["pca_x"]), spacing(arrays["pca_y"]))),
        "lambda_max": extremes.lambda_max,
        "lambda_min": extremes.lambda_min,
        "eigenvalue_ratio": extremes.ratio,
        "sharpness": sharpness(arrays["slice_coordinates"], arrays["slice_loss"], radius),
        "evaluations": int(evaluations),
        "seconds_per_image_evaluation": evaluating / (evaluations * len(rows)),
        "seconds": probe.seconds,
    }  # fmt: skip
    with atomic_outputs(*(out / name for name in LANDSCAPE_FILES.values())) as (arrays_path, summary_path):
        np.savez(arrays_path, **arrays)
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    log.info("landscape of %s: centre loss %.4g, convex share %.2f (random) %.2f (PCA), λ_max %.4g, λ_min %.4g, "
             "|λ_min/λ_max| %.3g, sharpness %.4g at r = %g; %.1f s", config.loss, centre["loss"],
             summary["convex_share_random"], summary["convex_share_pca"], extremes.lambda_max, extremes.lambda_min,
             extremes.ratio, summary["sharpness"], radius, probe.seconds["total"])  # fmt: skip
    return summary


def read_landscape(arrays_path: Path, summary_path: Path) -> Landscape:
    """A landscape written by ``write_landscape``, from its two files."""
    for path in (arrays_path, summary_path):
        if not Path(path).is_file():
            raise InputError(f"{path}: landscape file not found")
    with np.load(arrays_path) as arrays:
        return Landscape(dict(arrays), json.loads(Path(summary_path).read_text()))
