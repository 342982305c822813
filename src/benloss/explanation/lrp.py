"""LRP with zennit: the composite, and the input relevance of a decision score.

The composite maps rules by layer name, because the K-Branch CNN has three input layers:

* each branch's first convolution (``input_bounds``): ZBox with per-band bounds;
* every other convolution: ZPlus; both without the bias (zennit's ``zero_params``);
* every fully connected layer, and the decision head: ``EpsilonSpreadBias`` (ε = 1e-6), LRP-ε that hands the
  bias's share of the relevance to the inputs as well.

BatchNorm is merged into the preceding layers first (``ExactMergeBatchNorm``), with the model in ``eval()``, so
after the merge every layer has a bias whose size depends on the trained weights. The rules let no bias absorb or
inject relevance: each layer hands on all the relevance it receives, and the input relevance sums to the
explained score up to the stabilisers. The explained score is a linear head appended to the classifier
(``benloss.explanation.heads``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import NameMapComposite
from zennit.rules import ZBox, ZPlus

from benloss.explanation.heads import LinearHead, WithHead, decision_head
from benloss.explanation.rules import EpsilonSpreadBias
from benloss.training.losses import MultiLabelLoss

#: Parameters the convolutions' rules leave out.
ZERO_PARAMS = ["bias"]
#: The fully connected layers' stabiliser.
EPSILON = 1e-6


class ExactMergeBatchNorm(SequentialMergeBatchNorm):
    """zennit's BatchNorm merge, also zeroing the left-over layer's ``eps`` while merged.

    zennit 0.5 resets a merged BatchNorm to unit variance but keeps its ``eps``, so it still divides by
    sqrt(1 + eps): negligible for PyTorch's 1e-5, but with TensorFlow's 1e-3 it shifts every score by
    about 0.05 % per layer. Zeroing it makes the merged model give the original scores (zennit 1.0.0, which needs
    Python ≥ 3.11.11, does so itself).
    """

    def register(self, linears, batch_norm) -> None:
        self.original_eps = batch_norm.eps
        super().register(linears, batch_norm)
        batch_norm.eps = 0.0

    def remove(self) -> None:
        super().remove()
        self.batch_norm.eps = self.original_eps


def lrp_composite(model: nn.Module, input_bounds: dict[str, tuple[Tensor, Tensor]]) -> NameMapComposite:
    """ZBox on the named input layers (with their normalised (low, high) bounds) and ZPlus on the other
    convolutions, both without biases; ``EpsilonSpreadBias`` on the linear layers and heads; BatchNorm merged."""
    name_map = [((name,), ZBox(low, high, zero_params=ZERO_PARAMS)) for name, (low, high) in input_bounds.items()]
    convs = tuple(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n not in input_bounds)
    linears = tuple(n for n, m in model.named_modules() if isinstance(m, nn.Linear | LinearHead))
    name_map += [(convs, ZPlus(zero_params=ZERO_PARAMS)), (linears, EpsilonSpreadBias(EPSILON))]
    return NameMapComposite(name_map=name_map, canonizers=[ExactMergeBatchNorm()])


def input_relevance(
    model: nn.Module, inputs: tuple[Tensor, ...], rule: MultiLabelLoss | None, class_indices: Tensor,
    input_bounds: dict[str, tuple[Tensor, Tensor]],
) -> tuple[list[Tensor], Tensor]:  # fmt: skip
    """Relevance of each input of row n's decision score for class ``class_indices[n]`` under ``rule`` (the logit
    without one), and those scores, in one batched pass.

    The decision head is appended to the model; the backward pass starts from the scores themselves, and zennit's
    hooks hand back relevance in place of gradients, so the inputs' "gradients" are their relevance.
    """
    model.eval()
    with torch.no_grad():
        logits = model(*inputs)
    explained = WithHead(model, decision_head(rule, logits, class_indices))
    composite = lrp_composite(explained, {f"model.{name}": bounds for name, bounds in input_bounds.items()})
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    with composite.context(explained) as modified:
        scores = modified(*leaves)
        gradients = torch.autograd.grad(scores, leaves, grad_outputs=scores.detach())
    return [g.detach() for g in gradients], scores.detach()
