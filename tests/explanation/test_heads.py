"""The explained decision scores: each loss's ranking score of the class as a linear head on the logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benloss.explanation.heads import constant_scores, decision_head
from benloss.training.losses import build_rule


def logits(seed: int = 0, n: int = 6, c: int = 7) -> torch.Tensor:
    return torch.randn(n, c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


def brute_force_support(z: np.ndarray) -> np.ndarray:
    """Sparsemax's support by its definition (Martins & Astudillo 2016, Eq. 3): the k largest scores, for the
    largest k with 1 + k z_(k) > Σ_{j ≤ k} z_(j)."""
    order = np.argsort(-z)
    k = max(k for k in range(1, len(z) + 1) if 1 + k * z[order[k - 1]] > z[order[:k]].sum())
    return order[:k]


def test_without_a_rule_the_head_is_the_logit():
    z = logits()
    targets = torch.tensor([0, 1, 2, 3, 4, 6])
    head = decision_head(None, z, targets)
    weights, scores = head.weight, head(z)
    torch.testing.assert_close(weights, torch.nn.functional.one_hot(targets, 7).double())
    torch.testing.assert_close(scores, z[torch.arange(6), targets])


@pytest.mark.parametrize("loss", ["cel", "fl", "wcel", "hal", "hl"])
def test_losses_deciding_on_z_explain_the_logit(loss):
    z = logits(1)
    targets = torch.tensor([6, 5, 4, 3, 2, 1])
    head = decision_head(build_rule(loss, 7), z, targets)
    weights, scores = head.weight, head(z)
    torch.testing.assert_close(weights, torch.nn.functional.one_hot(targets, 7).double())
    torch.testing.assert_close(scores, z[torch.arange(6), targets])


def test_rl_explains_the_logit_minus_the_images_mean_logit():
    z = logits(2)
    targets = torch.tensor([0, 1, 2, 3, 4, 5])
    head = decision_head(build_rule("rl", 7, {"threshold": 0.3}), z, targets)
    weights, scores = head.weight, head(z)
    expected = torch.nn.functional.one_hot(targets, 7).double() - 1 / 7  # s = z_c − (1/C) Σ_k z_k
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(scores, z[torch.arange(6), targets] - z.mean(1))
    torch.testing.assert_close(head.bias, torch.zeros(6, dtype=torch.float64))  # linear, no offset


def test_sml_explains_the_logit_minus_tau_linear_while_the_support_holds():
    z = logits(3)
    targets = torch.tensor([0, 1, 2, 3, 4, 5])
    head = decision_head(build_rule("sml", 7), z, targets)
    weights, scores = head.weight, head(z)
    for n, c in enumerate(targets.tolist()):
        support = brute_force_support(z[n].numpy())
        tau = (z[n, support].sum().item() - 1) / len(support)
        expected = np.eye(7)[c] - np.isin(np.arange(7), support) / len(support)  # s = z_c − (Σ_S z − 1) / |S|
        np.testing.assert_allclose(weights[n].numpy(), expected, atol=1e-12)
        assert scores[n].item() == pytest.approx(z[n, c].item() - tau)
        assert head.bias[n].item() == pytest.approx(1 / len(support))


def test_sml_sole_supported_class_has_a_constant_score_and_no_weights():
    z = torch.tensor([[5.0, 0.0, -1.0], [0.2, 0.1, 0.0]], dtype=torch.float64)  # support {0}; then all three
    head = decision_head(build_rule("sml", 3), z, torch.tensor([0, 0]))
    torch.testing.assert_close(head.weight[0], torch.zeros(3, dtype=torch.float64))
    assert head(z)[0].item() == pytest.approx(1.0)  # sparsemax(z)_0 = 1 whatever z, near here
    torch.testing.assert_close(head.weight[1], torch.tensor([2 / 3, -1 / 3, -1 / 3], dtype=torch.float64))
    assert constant_scores(head).tolist() == [True, False]
