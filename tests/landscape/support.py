"""Helpers of the landscape tests (no tests here): a toy model whose loss is a known quadratic form."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


def symmetric(eigenvalues: list[float], seed: int = 0) -> np.ndarray:
    """A symmetric matrix with the given eigenvalues, in a random orthonormal basis."""
    basis, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigenvalues), len(eigenvalues))))
    return basis @ np.diag(eigenvalues) @ basis.T


class Quadratic(nn.Module):
    """Scores every image with ½ θᵀAθ of its one linear kernel θ: the mean score, as a loss, has Hessian A."""

    def __init__(self, matrix: np.ndarray) -> None:
        super().__init__()
        self.fc = nn.Linear(len(matrix), 1, bias=False).double()
        self.register_buffer("matrix", torch.from_numpy(matrix))

    def forward(self, x: Tensor) -> Tensor:
        theta = self.fc.weight[0]
        return (0.5 * theta @ self.matrix @ theta).expand(len(x), 1)


def mean_score(scores: Tensor, labels: Tensor) -> Tensor:
    """The toy's loss: its score, whatever the labels."""
    return scores.mean()
