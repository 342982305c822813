"""Filter-normalised directions (Li et al. 2018, Sec. 4) and the trajectory's PCA plane."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benloss.errors import InputError
from benloss.landscape.directions import (
    assign,
    flatten,
    pca_directions,
    perturbed_names,
    perturbed_parameters,
    random_direction,
    unflatten,
)
from benloss.training.models import KBranchCNN


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def test_only_convolution_and_linear_kernels_are_perturbed():
    assert perturbed_names(small_net()) == ["0.weight", "4.weight"]
    model = KBranchCNN(width=8, n_classes=19)
    kernels = {f"{n}.weight" for n, m in model.named_modules() if type(m).__name__ in ("SameConv2d", "Linear")}
    assert set(perturbed_names(model)) == kernels and len(kernels) == 9 + 3 + 2


def test_each_filter_of_a_random_direction_has_the_norm_of_the_models_filter():
    model = KBranchCNN(width=8, n_classes=19)
    with torch.no_grad():  # filters of different scales, one of them zero
        model.branch_10m.conv1.weight.mul_(torch.linspace(0, 3, 32).view(-1, 1, 1, 1))
    direction = random_direction(model, torch.Generator().manual_seed(1))
    weights = perturbed_parameters(model)
    for weight, part in zip(weights, unflatten(direction, weights), strict=True):
        expected = np.linalg.norm(weight.detach().numpy().reshape(len(weight), -1), axis=1)
        np.testing.assert_allclose(np.linalg.norm(part.numpy().reshape(len(part), -1), axis=1), expected, rtol=1e-5)
    assert not direction.isnan().any()


def test_moving_along_a_direction_leaves_biases_batchnorm_and_running_statistics_alone():
    model = small_net()
    model(torch.randn(8, 3, 8, 8))  # running statistics away from their initial values
    before = {k: v.clone() for k, v in model.state_dict().items()}
    direction = random_direction(model, torch.Generator().manual_seed(2))
    assign(perturbed_parameters(model), flatten(before, perturbed_names(model)) + direction)
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"0.weight", "4.weight"}


def test_the_same_seed_draws_the_same_direction():
    model = small_net()
    first = random_direction(model, torch.Generator().manual_seed(3))
    assert torch.equal(first, random_direction(model, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, random_direction(model, torch.Generator().manual_seed(4)))


def planar_trajectory(steps: int = 6) -> tuple[list[dict], dict, np.ndarray]:
    """Snapshots θ_t = θ_T + α_t u + β_t v (u, v neither orthogonal nor unit) ending at θ_T, and their (α, β)."""
    rng = np.random.default_rng(5)
    final = {"a.weight": torch.from_numpy(rng.normal(size=(4, 3))), "b.weight": torch.from_numpy(rng.normal(size=7)),
             "a.bias": torch.zeros(4)}  # fmt: skip
    u, v = rng.normal(size=19), rng.normal(size=19) + 0.5
    t = np.linspace(1, 0, steps)
    weights = np.stack([3 * t, np.sin(2 * t)], axis=1)
    snapshots = []
    for alpha, beta in weights:
        moved = torch.from_numpy(alpha * u + beta * v)
        snapshots.append({"a.weight": final["a.weight"] + moved[:12].view(4, 3),
                          "b.weight": final["b.weight"] + moved[12:], "a.bias": torch.ones(4)})  # fmt: skip
    return snapshots, final, weights


def test_the_final_weights_project_to_the_origin():
    snapshots, final, _ = planar_trajectory()
    plane = pca_directions(snapshots, final, ["a.weight", "b.weight"])
    assert np.array_equal(plane.coordinates[-1], [0.0, 0.0])


def test_a_planar_trajectory_is_reproduced_by_its_coordinates():
    snapshots, final, _ = planar_trajectory()
    names = ["a.weight", "b.weight"]
    plane = pca_directions(snapshots, final, names)
    displacements = np.stack([(flatten(s, names) - flatten(final, names)).numpy() for s in snapshots])
    np.testing.assert_allclose(plane.coordinates @ plane.directions.numpy(), displacements, atol=1e-10)
    np.testing.assert_allclose(plane.directions @ plane.directions.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(plane.explained.sum(), 1.0)
    assert plane.explained[0] >= plane.explained[1] > 0
    assert (plane.coordinates[0] >= 0).all()  # oriented so the trajectory starts on the positive side


def test_explained_variance_is_the_share_of_squared_displacement():
    snapshots, final, _ = planar_trajectory()
    names = ["a.weight", "b.weight"]
    displacements = np.stack([(flatten(s, names) - flatten(final, names)).numpy() for s in snapshots])
    singular = np.linalg.svd(displacements, compute_uv=False)  # numpy's SVD as the reference
    plane = pca_directions(snapshots, final, names)
    np.testing.assert_allclose(plane.explained, singular[:2] ** 2 / (singular**2).sum(), rtol=1e-10)


def test_a_trajectory_on_a_line_has_no_plane():
    snapshots, final, _ = planar_trajectory()
    line = [{k: final[k] + s * (snapshots[0][k] - final[k]) for k in final} for s in (1.0, 0.5, 0.0)]
    with pytest.raises(InputError, match="fewer than two dimensions"):
        pca_directions(line, final, ["a.weight", "b.weight"])
