"""Which weights a landscape moves, and along which directions.

Only the kernels of convolutions and linear layers are perturbed. Their direction is Li et al.'s filter-normalised
one: Gaussian noise rescaled so that every filter (an output unit: a convolution's output channel, a linear layer's
row) of the direction has the norm of the same filter of the weights, which makes distances comparable between
networks whose weights differ in scale. Biases and the weights of normalisation layers get a zero direction, as in
Li et al., and so does every other parameter that is no kernel (a vision transformer's position embeddings and
class token); BatchNorm's running statistics are buffers, never moved. Directions are flat vectors over the
perturbed kernels, in the order of ``perturbed_names``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from benloss.errors import InputError

#: The layers whose kernels are perturbed (dimension 0 of the kernel indexes the filters).
PERTURBED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
#: Columns of the displacement matrix multiplied at once when forming its Gram matrix in float64.
GRAM_CHUNK = 1 << 22


def perturbed_names(model: nn.Module) -> list[str]:
    """State-dict names of the perturbed kernels, in the model's module order."""
    prefix = [name for name, module in model.named_modules() if isinstance(module, PERTURBED_LAYERS)]
    return [f"{name}.weight" if name else "weight" for name in prefix]


def perturbed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The perturbed kernels themselves, in the order of ``perturbed_names``."""
    parameters = dict(model.named_parameters())
    return [parameters[name] for name in perturbed_names(model)]


def flatten(tensors: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """One flat vector of ``tensors[name]`` for ``names``, in that order."""
    return torch.cat([tensors[name].detach().reshape(-1) for name in names])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """``vector`` cut into views shaped as ``like`` (the inverse of ``flatten``)."""
    sizes = [tensor.numel() for tensor in like]
    if vector.numel() != sum(sizes):
        raise InputError(f"a direction of {vector.numel()} entries does not fit {sum(sizes)} perturbed weights")
    return [part.view(tensor.shape) for part, tensor in zip(vector.split(sizes), like, strict=True)]


@torch.no_grad()
def assign(parameters: Sequence[Tensor], vector: Tensor) -> None:
    """Copy the flat ``vector`` into ``parameters`` (in place)."""
    for parameter, part in zip(parameters, unflatten(vector, parameters), strict=True):
        parameter.copy_(part)


def filter_normalize(direction: Tensor, weight: Tensor) -> Tensor:
    """``direction`` (shaped as ``weight``) with each filter rescaled to the norm of the same filter of ``weight``;
    a filter of zero weights gets a zero direction."""
    dims = tuple(range(1, weight.ndim))
    target = torch.linalg.vector_norm(weight, dim=dims, keepdim=True)
    norm = torch.linalg.vector_norm(direction, dim=dims, keepdim=True)
    return direction * torch.where(norm > 0, target / norm.clamp(min=torch.finfo(norm.dtype).tiny), 0.0)


@torch.no_grad()
def random_direction(model: nn.Module, generator: torch.Generator) -> Tensor:
    """A filter-normalised Gaussian direction over the perturbed kernels, flat, on the model's device.

    The noise is drawn on the CPU from ``generator``, so the same seed gives the same draw on every device and for
    every model of one architecture; only the rescaling depends on the weights.
    """
    parts = []
    for weight in perturbed_parameters(model):
        noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype).to(weight.device)
        parts.append(filter_normalize(noise, weight).reshape(-1))
    return torch.cat(parts)


@dataclass(frozen=True)
class TrajectoryPlane:
    """The plane of a training trajectory's first two principal components, through the final weights.

    ``directions`` (2, P) are orthonormal; ``coordinates`` (T, 2) are each snapshot's θ_t − θ_T projected on them
    (the final weights are the origin); ``explained`` (2,) is the share of Σ_t ‖θ_t − θ_T‖² each direction captures.
    """

    directions: Tensor
    coordinates: np.ndarray
    explained: np.ndarray


def pca_directions(
    snapshots: Sequence[Mapping[str, Tensor]], final: Mapping[str, Tensor], names: Sequence[str]
) -> TrajectoryPlane:
    """The first two principal components of the displacements θ_t − θ_T of the perturbed kernels ``names``, as
    ``principal_plane`` finds them."""
    origin = flatten(final, names)
    return principal_plane(torch.stack([flatten(snapshot, names).to(origin) - origin for snapshot in snapshots]))


def principal_plane(displacements: Tensor) -> TrajectoryPlane:
    """The first two principal components of the rows of ``displacements`` (T, P), each θ_t − θ_T.

    The components are the right singular vectors of the displacement matrix M, uncentred so that the plane passes
    through θ_T (sklearn's centred PCA, which Li et al.'s code uses, fits a plane through the mean of the snapshots
    instead, which need not contain the final weights). The SVD is taken through the small Gram matrix,
    M Mᵀ = U Σ² Uᵀ and V = Mᵀ U Σ⁻¹, in float64 and a slice of columns at a time, so P may be in the hundreds of
    millions with no copy of M.
    """
    if len(displacements) < 2:
        raise InputError(f"a trajectory's plane needs at least two snapshots, got {len(displacements)}")
    gram = torch.zeros(len(displacements), len(displacements), dtype=torch.float64, device=displacements.device)
    for chunk in displacements.split(GRAM_CHUNK, dim=1):
        chunk = chunk.double()
        gram += chunk @ chunk.T
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    eigenvalues, eigenvectors = eigenvalues.flip(0).clamp(min=0), eigenvectors.flip(1)
    total = float(eigenvalues.sum())
    if float(eigenvalues[1]) <= 1e-12 * total:
        raise InputError("the trajectory's displacements from the final weights span fewer than two dimensions: a "
                         "plane needs two snapshots that differ from the final model, not on one line")  # fmt: skip
    # Orient each component so the earliest snapshot lies on its non-negative side: figures of different losses
    # then start their trajectories in the same quadrant.
    basis = eigenvectors[:, :2] * torch.where(eigenvectors[0, :2] < 0, -1.0, 1.0).to(eigenvectors)
    singular = eigenvalues[:2].sqrt()
    directions = torch.empty(2, displacements.shape[1], dtype=displacements.dtype, device=displacements.device)
    coordinates = torch.zeros(len(displacements), 2, dtype=torch.float64, device=displacements.device)
    for start in range(0, displacements.shape[1], GRAM_CHUNK):
        chunk = displacements[:, start : start + GRAM_CHUNK].double()
        plane = (basis.T @ chunk) / singular[:, None]
        directions[:, start : start + GRAM_CHUNK] = plane
        coordinates += chunk @ plane.T  # M V (= U Σ), exactly 0 for the final weights
    explained = (eigenvalues[:2] / total).cpu().numpy()
    return TrajectoryPlane(directions, coordinates.cpu().numpy(), explained)
