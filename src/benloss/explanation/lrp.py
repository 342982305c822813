"""LRP with zennit: the composite, and the input relevance of a decision score.

The composite maps rules by layer name where the architecture names its input layers
(``Architecture.input_layers``: the K-Branch CNN's three branch inputs, a ResNet's stem), by layer type elsewhere:

* the input layers (``input_bounds``): ZBox with per-band bounds;
* every other convolution: ZPlus; both without the bias (zennit's ``zero_params``);
* every fully connected layer, and the decision head: ``EpsilonSpreadBias`` (ε = 1e-6), LRP-ε that hands the
  bias's share of the relevance to the inputs as well;
* a residual block's sum and an average pool: zennit's ``Norm``, each summand's (each pooled pixel's) share of
  the sum: a_i / Σ_k a_k of the relevance.

The other layers pass relevance by their gradient, which conserves it: a max-pool (a ResNet's stem, the K-Branch
CNN's branches) hands each pooled unit's relevance to its maximum; a ReLU passes it where its input is positive,
and nothing reaches a unit that is 0, as every rule above hands a unit a share in proportion to its value; and
stacking the band groups (``benloss.architectures.stacked``) sums each native pixel's copies. An average pool is
the exception: its gradient would give every pixel of a channel an equal share, ReLU's gradient then drops the
shares of the pixels that are 0, and a ResNet's input relevance would miss its score by what those carried.

The canonizers run first (``benloss.explanation.canonizers``), with the model in ``eval()``: BatchNorm merged into
the preceding layers, so after the merge every layer has a bias whose size depends on the trained weights, and
each residual addition routed through a module. The rules let no bias absorb or inject relevance: each layer
hands on all the relevance it receives, and the input relevance sums to the explained score up to the
stabilisers. The explained score is a linear head appended to the classifier (``benloss.explanation.heads``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from zennit.core import Composite, Hook
from zennit.layer import Sum
from zennit.rules import Norm, ZBox, ZPlus
from zennit.types import AvgPool

from benloss.explanation.canonizers import lrp_canonizers
from benloss.explanation.heads import LinearHead, WithHead, decision_head
from benloss.explanation.rules import EpsilonSpreadBias
from benloss.training.losses import MultiLabelLoss

#: Parameters the convolutions' rules leave out.
ZERO_PARAMS = ["bias"]
#: The fully connected layers' stabiliser.
EPSILON = 1e-6


def lrp_composite(model: nn.Module, input_bounds: dict[str, tuple[Tensor, Tensor]]) -> Composite:
    """ZBox on the named input layers (with their normalised (low, high) bounds) and ZPlus on the other
    convolutions, both without biases; ``EpsilonSpreadBias`` on the linear layers and heads; ``Norm`` on the
    residual sums and average pools; BatchNorm merged and residual sums routed through modules first."""
    input_rules = {name: ZBox(low, high, zero_params=ZERO_PARAMS) for name, (low, high) in input_bounds.items()}
    by_type = ((nn.Conv2d, ZPlus(zero_params=ZERO_PARAMS)), (nn.Linear | LinearHead, EpsilonSpreadBias(EPSILON)),
               (Sum | AvgPool, Norm(EPSILON)))  # fmt: skip

    def module_map(ctx: dict, name: str, module: nn.Module) -> Hook | None:
        if name in input_rules:
            return input_rules[name]
        return next((rule for kind, rule in by_type if isinstance(module, kind)), None)

    return Composite(module_map, canonizers=lrp_canonizers(model))


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
    missing = sorted(set(input_bounds) - dict(model.named_modules()).keys())
    if missing:
        raise ValueError(f"no input layer {', '.join(missing)} in the {type(model).__name__} to explain")
    composite = lrp_composite(explained, {f"model.{name}": bounds for name, bounds in input_bounds.items()})
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    with composite.context(explained) as modified:
        scores = modified(*leaves)
        gradients = torch.autograd.grad(scores, leaves, grad_outputs=scores.detach())
    return [g.detach() for g in gradients], scores.detach()
