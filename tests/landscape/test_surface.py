"""Surfaces and slices: the trained point, the grid's indexing, restored weights."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, f1_score

from benloss.landscape.directions import random_direction
from benloss.landscape.surface import loss_slices, loss_surface
from benloss.training.losses import build_loss, build_rule
from benloss.training.models import KBranchCNN

from .support import Quadratic, mean_score, symmetric


def kbranch_and_images(n: int = 4):
    torch.manual_seed(0)
    model = KBranchCNN(width=8, n_classes=19)
    model.train()
    inputs = (torch.randn(n, 4, 120, 120), torch.randn(n, 6, 60, 60), torch.randn(n, 2, 20, 20))
    model(*inputs)  # running statistics of its own, as a trained model has
    labels = (torch.rand(n, 19) < 0.3).to(torch.uint8)
    labels[:, :2] = torch.tensor([[1, 0]] * (n // 2) + [[0, 1]] * (n - n // 2), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    return model, inputs, labels, [random_direction(model, generator), random_direction(model, generator)]


def test_the_centre_of_a_surface_is_the_models_loss_f1_and_map_on_the_same_images():
    model, inputs, labels, directions = kbranch_and_images()
    axis = np.linspace(-1, 1, 3)
    surface = loss_surface(model, directions, axis, axis, inputs, labels, build_loss("cel"), build_rule("cel", 19),
                           batch_size=3)  # fmt: skip
    model.eval()
    with torch.no_grad():
        scores = model(*inputs).double()
    y = labels.double()
    assert np.isclose(surface["loss"][1, 1], F.binary_cross_entropy_with_logits(scores, y, reduction="sum") / len(y))
    true, predicted = labels.numpy(), (scores >= 0).numpy()
    assert np.isclose(surface["f1_samples"][1, 1], f1_score(true, predicted, average="samples", zero_division=0))
    kept = true.any(0)  # scikit-learn's macro AP over the classes with positives
    assert np.isclose(surface["map_macro"][1, 1], average_precision_score(true[:, kept], scores.numpy()[:, kept]))
    assert not np.isclose(surface["loss"][0, 0], surface["loss"][1, 1])


def test_the_weights_the_mode_and_the_running_statistics_are_restored_exactly():
    model, inputs, labels, directions = kbranch_and_images()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    axis = np.linspace(-0.7, 0.9, 2)
    loss_surface(model, directions, axis, axis, inputs, labels, build_loss("cel"), build_rule("cel", 19))
    loss_slices(model, directions, axis, inputs, labels, build_loss("cel"), build_rule("cel", 19))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def toy(eigenvalues: list[float]):
    matrix = symmetric(eigenvalues)
    model = Quadratic(matrix)
    with torch.no_grad():
        model.fc.weight.copy_(torch.from_numpy(np.random.default_rng(1).normal(size=(1, len(matrix)))))
    labels = torch.tensor([[1], [0]], dtype=torch.uint8)
    return model, matrix, (torch.zeros(2, 1, dtype=torch.float64),), labels


def test_surface_entry_i_j_is_the_point_x_i_y_j():
    model, matrix, inputs, labels = toy([2.0, 1.0, -1.0])
    theta = model.fc.weight.detach().numpy()[0].copy()
    d1, d2 = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64), torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64)
    x, y = np.array([-1.0, 0.0, 0.5, 2.0]), np.array([-0.5, 0.0, 1.0])
    surface = loss_surface(model, [d1, d2], x, y, inputs, labels, mean_score, build_rule("cel", 1))
    for i, a in enumerate(x):
        for j, b in enumerate(y):
            point = theta + a * d1.numpy() + b * d2.numpy()
            assert np.isclose(surface["loss"][i, j], 0.5 * point @ matrix @ point)
    slices = loss_slices(model, [d1, d2], x, inputs, labels, mean_score, build_rule("cel", 1))
    np.testing.assert_allclose(slices["loss"][0], surface["loss"][:, 1])
    assert slices["loss"].shape == (2, 4)
