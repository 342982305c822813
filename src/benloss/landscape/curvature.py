"""Measured convexity and sharpness of a landscape.

Three numbers: the share of a surface where its finite-difference Hessian is positive semi-definite (the 2D
projection's convexity: a convex projection does not make the full loss convex there; Li et al. map the full
Hessian's |λ_min / λ_max| instead, which this module gives at the trained weights); the extreme eigenvalues of the
loss's full Hessian with respect to the perturbed kernels at the trained weights, whose ratio |λ_min / λ_max| Li et
al. report (near 0: locally convex, a negative λ_min of comparable size: a saddle); and the rise of the loss at a
fixed filter-normalised distance (sharpness).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from benloss.errors import InputError
from benloss.landscape.directions import perturbed_parameters
from benloss.landscape.surface import BATCH_SIZE, batches

#: A surface point counts as convex where its smaller eigenvalue is at least −this times the surface's largest
#: |eigenvalue|: finite differences of a flat or linear stretch are floating-point noise of either sign.
CONVEX_TOLERANCE = 1e-3


def _grid_steps(step: float | tuple[float, float]) -> tuple[float, float]:
    return (float(step), float(step)) if np.isscalar(step) else (float(step[0]), float(step[1]))


def hessian_eigenvalues_2d(surface: np.ndarray, step: float | tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The smaller and larger eigenvalue of the central-difference Hessian at every interior point of a surface
    (G_x, G_y) sampled every ``step`` (one spacing, or one per axis), each (G_x − 2, G_y − 2)."""
    f = np.asarray(surface, dtype=np.float64)
    if f.ndim != 2 or min(f.shape) < 3:
        raise InputError(f"a surface needs at least 3 × 3 points for its curvature, got shape {f.shape}")
    hx, hy = _grid_steps(step)
    centre = f[1:-1, 1:-1]
    fxx = (f[2:, 1:-1] - 2 * centre + f[:-2, 1:-1]) / hx**2
    fyy = (f[1:-1, 2:] - 2 * centre + f[1:-1, :-2]) / hy**2
    fxy = (f[2:, 2:] - f[2:, :-2] - f[:-2, 2:] + f[:-2, :-2]) / (4 * hx * hy)
    mean, spread = (fxx + fyy) / 2, np.hypot((fxx - fyy) / 2, fxy)
    return mean - spread, mean + spread


def convex_share(surface: np.ndarray, step: float | tuple[float, float], tolerance: float = CONVEX_TOLERANCE) -> float:
    """Share of a surface's interior points whose 2 × 2 finite-difference Hessian is positive semi-definite (both
    eigenvalues ≥ −``tolerance`` × the largest |eigenvalue| over the surface); points where the loss is not finite
    are left out, and the share is NaN if none is left."""
    low, high = hessian_eigenvalues_2d(surface, step)
    finite = np.isfinite(low) & np.isfinite(high)
    if not finite.any():
        return float("nan")
    scale = max(np.abs(low[finite]).max(), np.abs(high[finite]).max())
    return float((low[finite] >= -tolerance * scale).mean())


def sharpness(coordinates: np.ndarray, slices: np.ndarray, radius: float) -> float:
    """Mean rise of the loss from the trained weights to distance ``radius`` along each sliced direction, both
    ways: mean over k and ± of L(θ ± r d_k) − L(θ), for slices (K, S) sampled at ``coordinates`` (S,), increasing.

    Exact where 0 and ±r are among the coordinates, linearly interpolated otherwise.
    """
    coordinates, slices = np.asarray(coordinates, dtype=np.float64), np.atleast_2d(np.asarray(slices, np.float64))
    if not coordinates[0] <= -radius < 0 < radius <= coordinates[-1]:
        raise InputError(f"sharpness at radius {radius} needs slices from −{radius} to {radius}, "
                         f"got {coordinates[0]} to {coordinates[-1]}")  # fmt: skip
    ends = np.stack([np.interp([-radius, radius], coordinates, row) for row in slices])
    centres = np.array([np.interp(0.0, coordinates, row) for row in slices])
    return float((ends - centres[:, None]).mean())


@dataclass(frozen=True)
class HessianExtremes:
    """The largest and smallest eigenvalue of the Hessian, and |λ_min / λ_max| (NaN where λ_max is 0)."""

    lambda_max: float
    lambda_min: float

    @property
    def ratio(self) -> float:
        return abs(self.lambda_min / self.lambda_max) if self.lambda_max else float("nan")


def hessian_vector_product(
    model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: Sequence[Tensor], labels: Tensor,
    vector: Tensor, batch_size: int = BATCH_SIZE,
) -> Tensor:  # fmt: skip
    """H v for the Hessian H of the loss over all the images (a mean) with respect to the perturbed kernels, by
    double backward, batch by batch; the model's mode is the caller's."""
    parameters = perturbed_parameters(model)
    parts = list(vector.split([p.numel() for p in parameters]))
    product = torch.zeros_like(vector)
    n = len(labels)
    # Fused attention kernels have no double backward; the reference implementation does (timm's ViT uses them).
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        for *x, y in batches((*inputs, labels), batch_size):
            loss = loss_fn(model(*x), y) * (len(y) / n)
            gradients = torch.autograd.grad(loss, parameters, create_graph=True)
            dot = sum((g * v.view_as(g)).sum() for g, v in zip(gradients, parts, strict=True))
            second = torch.autograd.grad(dot, parameters)
            product += torch.cat([s.reshape(-1) for s in second])
    return product


def hessian_extremes(
    model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: Sequence[Tensor], labels: Tensor,
    iterations: int, generator: torch.Generator, batch_size: int = BATCH_SIZE,
) -> HessianExtremes:  # fmt: skip
    """The Hessian's extreme eigenvalues at the current weights, in eval mode, by ``iterations`` Lanczos steps.

    Lanczos (with full reorthogonalisation) builds a tridiagonal matrix from ``iterations`` Hessian-vector products
    whose extreme eigenvalues approach both ends of the spectrum at once, faster than power iteration on H and then
    on λ_max I − H; they approach from inside, so too few steps understate |λ|. It stops early once the Krylov
    space is exhausted (then exact). The start vector is Gaussian, drawn on the CPU from ``generator``.
    """
    if iterations < 1:
        raise InputError(f"the Hessian's eigenvalues need at least one Lanczos step, got {iterations}")
    was_training = model.training
    model.eval()
    try:
        parameters = perturbed_parameters(model)
        like = parameters[0]
        size = sum(p.numel() for p in parameters)
        q = torch.randn(size, generator=generator, dtype=like.dtype).to(like.device)
        basis = [q / q.norm()]
        alphas: list[float] = []
        betas: list[float] = []
        for _ in range(min(iterations, size)):
            w = hessian_vector_product(model, loss_fn, inputs, labels, basis[-1], batch_size)
            alphas.append(float(w @ basis[-1]))
            for _ in range(2):  # twice is enough (Parlett's "twice is enough") to keep the basis orthogonal
                for vector in basis:
                    w -= (w @ vector) * vector
            beta = float(w.norm())
            scale = max(max(abs(a) for a in alphas), max(betas, default=0.0))
            if len(alphas) == min(iterations, size) or beta <= 100 * torch.finfo(w.dtype).eps * scale:
                break
            betas.append(beta)
            basis.append(w / beta)
    finally:
        model.train(was_training)
    ritz = np.linalg.eigvalsh(np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1))
    return HessianExtremes(lambda_max=float(ritz[-1]), lambda_min=float(ritz[0]))
