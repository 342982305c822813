"""The score each loss decides by, as a linear head appended to the classifier for the explanation.

A loss decides on its ranking score (``MultiLabelLoss.ranking_scores``): the logit z_c for most, z_c − mean_c z
for RL and z_c − τ(z) for SML, whose losses never learn an image's mean score. Each is linear in z where it is
smooth (for SML: while the support S of sparsemax(z) stays fixed), so around a given z it is s = w·z + b with w
the gradient of the class's score: e_c for the logit, e_c − 1/C for RL, e_c − 1_S/|S| for SML, with b = 1/|S|.
``LinearHead`` is that layer, one row per example; LRP treats it as every other fully connected layer.

Where the score does not depend on z at all (SML's only class in the support, whose score is 1 whatever z), w is 0
and no relevance reaches the inputs: ``constant_scores`` marks those explanations.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from benloss.training.losses import MultiLabelLoss


class LinearHead(nn.Module):
    """s_n = w_n · z_n + b_n: a row of weights and an offset per example, fixed for one pass."""

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, z: Tensor) -> Tensor:
        return (z * self.weight).sum(1) + self.bias


class WithHead(nn.Module):
    """A model with a head appended: ``forward(*inputs) = head(model(*inputs))``."""

    def __init__(self, model: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.head(self.model(*inputs))


def decision_head(rule: MultiLabelLoss | None, logits: Tensor, class_indices: Tensor) -> LinearHead:
    """The head giving row n's decision score for class ``class_indices[n]`` at ``logits``: the rule's ranking score
    (the logit z_c without a rule), linearised where it is piecewise linear (exact there)."""
    z = logits.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        ranked = z if rule is None else rule.ranking_scores(z)
        scores = ranked.gather(1, class_indices.to(z.device)[:, None]).squeeze(1)
        (weight,) = torch.autograd.grad(scores.sum(), z)
    return LinearHead(weight, scores.detach() - (weight * logits.detach()).sum(1))


def constant_scores(head: LinearHead) -> Tensor:
    """Rows whose decision score does not depend on the logits (all weights 0): nothing to explain."""
    return ~(head.weight != 0).any(1)
