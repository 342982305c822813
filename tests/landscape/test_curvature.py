"""Measured convexity: finite-difference Hessians of surfaces, the loss's Hessian spectrum, sharpness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benloss.errors import InputError
from benloss.landscape.curvature import convex_share, hessian_extremes, sharpness
from benloss.training.losses import build_loss

from .support import Quadratic, mean_score, symmetric

AXIS = np.linspace(-1, 1, 11)
X, Y = np.meshgrid(AXIS, AXIS, indexing="ij")
STEP = AXIS[1] - AXIS[0]


def test_a_convex_bowl_is_convex_everywhere():
    assert convex_share(X**2 + 3 * Y**2 + X * Y, STEP) == 1.0


def test_a_saddle_is_convex_nowhere():
    assert convex_share(X**2 - Y**2, STEP) == 0.0


def test_a_surface_convex_in_one_half_is_convex_in_that_half():
    # f = x³ + y²: Hessian diag(6x, 2), positive semi-definite where x ≥ 0 (x = 0 counts: within tolerance)
    share = convex_share(X**3 + Y**2, (STEP, STEP))
    assert share == pytest.approx(5 / 9)


def toy(eigenvalues: list[float]):
    model = Quadratic(symmetric(eigenvalues, seed=2))
    return model, (torch.zeros(6, 1, dtype=torch.float64),), torch.zeros(6, 1)


@pytest.mark.parametrize(("eigenvalues", "expected"), [([3.0, 1.5, 0.5, -0.25, -2.0], (3.0, -2.0, 2 / 3)),
                                                       ([4.0, 2.0, 1.0, 0.1], (4.0, 0.1, 0.025))])  # fmt: skip
def test_the_hessian_of_a_quadratic_has_its_matrixs_extreme_eigenvalues(eigenvalues, expected):
    model, inputs, labels = toy(eigenvalues)
    extremes = hessian_extremes(model, mean_score, inputs, labels, 20, torch.Generator().manual_seed(0), batch_size=4)
    assert (extremes.lambda_max, extremes.lambda_min, extremes.ratio) == pytest.approx(expected, rel=1e-9)


def test_the_hessian_extremes_of_a_real_loss_match_its_full_hessian():
    torch.manual_seed(0)
    model = nn.Linear(5, 3).double()
    x, y = torch.randn(9, 5, dtype=torch.float64), (torch.rand(9, 3) < 0.5).double()
    loss = build_loss("hl")

    def of_kernel(kernel):
        return loss(F.linear(x, kernel, model.bias.detach()), y)

    full = torch.autograd.functional.hessian(of_kernel, model.weight.detach()).reshape(15, 15)
    reference = np.linalg.eigvalsh(full.numpy())  # torch's full Hessian, its spectrum by LAPACK
    extremes = hessian_extremes(model, loss, (x,), y, 15, torch.Generator().manual_seed(0), batch_size=4)
    assert (extremes.lambda_max, extremes.lambda_min) == pytest.approx((reference[-1], reference[0]), abs=1e-9)
    assert model.training


def test_sharpness_is_the_mean_rise_at_the_radius():
    coordinates = np.linspace(-1, 1, 9)
    slices = np.stack([coordinates**2, 2 * coordinates**2 + coordinates]) + 5.0
    # (0.25 + 0.25 + (0.5 − 0.5) + (0.5 + 0.5)) / 4
    assert sharpness(coordinates, slices, 0.5) == pytest.approx(0.375)


def test_sharpness_needs_slices_reaching_the_radius():
    with pytest.raises(InputError, match="radius 2"):
        sharpness(np.linspace(-1, 1, 5), np.zeros((2, 5)), 2.0)
