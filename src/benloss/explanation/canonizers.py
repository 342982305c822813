"""Canonizers: temporary rewrites of a model into a form LRP's rules apply to, undone when the explanation ends.

* ``ExactMergeBatchNorm`` folds every BatchNorm into the convolution or linear layer before it (the stem's, each
  residual block's and each downsampling shortcut's in a timm ResNet), exactly: the merged model gives the
  original scores. A BatchNorm left unmerged would scale relevance by its gain: ``lrp_canonizers`` refuses one.
* ``ResidualSum`` routes the addition of a timm ``BasicBlock`` or ``Bottleneck`` (``x += shortcut``) through a
  zennit ``Sum`` module, the two stacked on a last axis, so that a rule can take it: zennit's ``Norm`` hands the
  residual branch r and the shortcut s their shares r / (r + s) and s / (r + s) of the relevance. Without a rule
  the gradient would hand both the whole.

Removing them restores the model exactly: the saved tensors are put back and the added attributes deleted.
"""

from __future__ import annotations

import torch
from timm.models.resnet import BasicBlock, Bottleneck
from torch import Tensor, nn
from zennit.canonizers import AttributeCanonizer, Canonizer, SequentialMergeBatchNorm
from zennit.core import collect_leaves
from zennit.layer import Sum
from zennit.types import BatchNorm, Linear


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


def _basic_block_forward(self: BasicBlock, x: Tensor) -> Tensor:
    """timm's ``BasicBlock.forward`` with the residual addition in ``canonizer_sum``."""
    shortcut = x if self.downsample is None else self.downsample(x)
    x = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
    x = self.bn2(self.conv2(x))
    if self.drop_path is not None:
        x = self.drop_path(x)
    return self.act2(self.canonizer_sum(torch.stack([x, shortcut], dim=-1)))


def _bottleneck_forward(self: Bottleneck, x: Tensor) -> Tensor:
    """timm's ``Bottleneck.forward`` with the residual addition in ``canonizer_sum``."""
    shortcut = x if self.downsample is None else self.downsample(x)
    x = self.act1(self.bn1(self.conv1(x)))
    x = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(x)))))
    x = self.bn3(self.conv3(x))
    if self.drop_path is not None:
        x = self.drop_path(x)
    return self.act3(self.canonizer_sum(torch.stack([x, shortcut], dim=-1)))


_FORWARDS = {BasicBlock: _basic_block_forward, Bottleneck: _bottleneck_forward}


class ResidualSum(AttributeCanonizer):
    """Gives every timm ``BasicBlock`` and ``Bottleneck`` a ``canonizer_sum`` (zennit's ``Sum``) and a forward that
    adds the shortcut through it."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @staticmethod
    def _attribute_map(name: str, module: nn.Module) -> dict | None:
        forward = _FORWARDS.get(type(module))
        if forward is None:
            return None
        return {"forward": forward.__get__(module), "canonizer_sum": Sum()}


def lrp_canonizers(model: nn.Module) -> list[Canonizer]:
    """The canonizers for ``model``, after checking that they leave nothing without a rule: every BatchNorm right
    after a convolution or linear layer, no residual block with an attention gate."""
    previous = None
    for leaf in collect_leaves(model):
        if isinstance(leaf, BatchNorm) and not isinstance(previous, Linear):
            raise ValueError(f"{type(leaf).__name__} after {type(previous).__name__}: no layer to merge it into")
        previous = leaf
    for name, module in model.named_modules():
        if type(module) in _FORWARDS and module.se is not None:
            raise ValueError(f"residual block {name} has an attention gate: no rule here conserves through it")
    return [ExactMergeBatchNorm(), ResidualSum()]
