"""The canonizers of timm ResNets: exact BatchNorm merging, the residual sum as a module, and their removal."""

from __future__ import annotations

import pytest
import torch
from timm.models.resnet import BasicBlock
from torch import nn
from zennit.core import Composite

from benloss.explanation.canonizers import lrp_canonizers
from benloss.explanation.lrp import lrp_composite

from .support import random_inputs, randomise_batch_norm, trained_like_model

RESNETS = ("resnet18", "resnet50")


def canonized(model: nn.Module):
    """``model`` with the canonizers applied, no rules."""
    return Composite(canonizers=lrp_canonizers(model)).context(model)


def merged_by_hand(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A bias-free convolution followed by BatchNorm in eval mode as one convolution, in float64:
    w γ / √(σ² + ε) and β − μ γ / √(σ² + ε)."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return conv.weight.double() * scale[:, None, None, None], bn.bias.double() - bn.running_mean.double() * scale


def conv_of(batch_norm: str) -> str:
    """The convolution timm puts before a BatchNorm: ``bnK`` after ``convK``, a shortcut's ``1`` after its ``0``."""
    head, _, last = batch_norm.rpartition(".")
    return f"{head}.0" if last == "1" else f"{head}.{last.replace('bn', 'conv')}"


@pytest.mark.parametrize("arch", RESNETS)
def test_every_convolution_takes_in_its_batchnorm(arch):
    model = trained_like_model(arch)
    layers = dict(model.named_modules())
    norms = [name for name, m in layers.items() if isinstance(m, nn.BatchNorm2d)]
    expected = {name: merged_by_hand(layers[conv_of(name)], layers[name]) for name in norms}
    with canonized(model):
        for name in norms:
            weight, bias = expected[name]
            conv = layers[conv_of(name)]
            torch.testing.assert_close(conv.weight.double(), weight, rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(conv.bias.double(), bias, rtol=1e-6, atol=1e-7)
            bn = layers[name]  # and the BatchNorm left over is the identity, eps included
            assert (bn.running_mean == 0).all() and (bn.running_var == 1).all() and bn.eps == 0
            assert (bn.weight == 1).all() and (bn.bias == 0).all()
    assert len(norms) == {"resnet18": 20, "resnet50": 53}[arch]  # stem, blocks and shortcuts: every one


@pytest.mark.parametrize("arch", RESNETS)
def test_the_canonized_resnet_gives_the_original_scores(arch):
    model = trained_like_model(arch)
    x = random_inputs(2)
    with torch.no_grad():
        before = model(*x)
        with canonized(model) as changed:
            sums = [m for m in changed.modules() if hasattr(m, "canonizer_sum")]
            after = changed(*x)
    assert len(sums) == {"resnet18": 8, "resnet50": 16}[arch]  # every residual block adds through its module
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5 * float(before.abs().max()))


@pytest.mark.parametrize("arch", RESNETS)
def test_removing_the_canonizers_restores_the_model_exactly(arch):
    model = trained_like_model(arch)
    x = random_inputs(2)
    with torch.no_grad():
        before = model(*x)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    with canonized(model):
        pass
    assert list(model.state_dict()) == list(state)
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert all(m.eps == 1e-5 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert not any("forward" in vars(m) or hasattr(m, "canonizer_sum") for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(*x), before)


def test_the_residual_sum_hands_each_summand_its_share():
    torch.manual_seed(0)
    block = randomise_batch_norm(BasicBlock(3, 3))
    x = torch.randn(2, 3, 5, 5).relu().requires_grad_(True)  # a block's input is a ReLU's output
    stacked = {}

    def keep_summands(module, inputs):
        stacked["value"] = inputs[0]
        inputs[0].register_hook(lambda grad: stacked.update(relevance=grad))

    with lrp_composite(block, {}).context(block):
        block.canonizer_sum.register_forward_pre_hook(keep_summands, prepend=True)  # before the rule's hook
        out = block(x)
        upper = torch.rand(out.shape, generator=torch.Generator().manual_seed(1))
        out.backward(upper)  # the relevance the block's outputs receive
    value, relevance = stacked["value"].detach(), stacked["relevance"]
    z = value.sum(-1, keepdim=True)  # residual path + shortcut, before the last ReLU, which passes z > 0
    expected = torch.where(z > 0, value / (z + 1e-6) * upper[..., None], 0.0)  # the share, stabilised like LRP-ε
    torch.testing.assert_close(relevance, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(relevance[..., 0], relevance[..., 1])  # not the gradient's copy to both


def test_a_batchnorm_after_no_linear_layer_is_refused():
    with pytest.raises(ValueError, match="BatchNorm2d after ReLU: no layer to merge it into"):
        lrp_canonizers(nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU(), nn.BatchNorm2d(2)))


def test_a_residual_block_with_an_attention_gate_is_refused():
    gated = nn.Sequential(BasicBlock(4, 4, attn_layer="se"))
    with pytest.raises(ValueError, match="residual block 0 has an attention gate"):
        lrp_canonizers(gated)
