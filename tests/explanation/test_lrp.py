"""The LRP composite: BatchNorm merging, the rules against a brute-force LRP, and conservation for every loss, on the
K-Branch CNN and on the ResNets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from zennit.core import Composite

from benloss.architectures.stacked import stack_bands
from benloss.data.encoded import read_patch_names
from benloss.explanation.canonizers import ExactMergeBatchNorm, lrp_canonizers
from benloss.explanation.explain import input_bounds
from benloss.explanation.heads import constant_scores, decision_head
from benloss.explanation.lrp import input_relevance, lrp_composite
from benloss.explanation.zbox_bounds import BoxBounds, zbox_bounds
from benloss.facts.bands import BAND_GROUPS, BANDS, BandStatistics, read_band_statistics
from benloss.training.batches import EncodedSplit
from benloss.training.losses import build_rule
from benloss.training.models import BandNormalizer
from benloss.training.train import load_model

from .support import model_path, random_inputs, trained_like, trained_like_model


def test_merging_batchnorm_keeps_the_scores():
    model = trained_like()
    x = random_inputs()
    before = model(*x)
    with Composite(canonizers=[ExactMergeBatchNorm()]).context(model) as merged:
        assert not any(m.training for m in merged.modules())
        after = merged(*x)
        conv = merged.branch_10m.conv1
        assert conv.bias.abs().sum() > 0  # the BatchNorm shift now lives in the convolution
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(*x), before)  # and leaving the context restores the model
    assert model.branch_10m.bn1.eps == 1e-3


# -- a brute-force LRP of a small network ------------------------------------------------------------


def small_network(seed: int = 0) -> nn.Sequential:
    """Conv (the input layer) → BatchNorm → ReLU → max-pool → conv → BatchNorm → ReLU → flatten → linear, with
    biases and trained-like BatchNorm statistics."""
    torch.manual_seed(seed)
    network = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 5),
    )  # fmt: skip
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
        if isinstance(module, nn.Conv2d | nn.Linear):
            module.bias.data.uniform_(-0.5, 0.5)
    return network.eval()


def dense_conv(weight: np.ndarray, size: int, padding: int) -> np.ndarray:
    """A stride-1 convolution as a matrix, (out_channels · out², in_channels · size²), by its definition."""
    out_channels, in_channels, k, _ = weight.shape
    out = size + 2 * padding - k + 1
    matrix = np.zeros((out_channels, out, out, in_channels, size, size))
    for o, y, x, c, dy, dx in np.ndindex(out_channels, out, out, in_channels, k, k):
        row, column = y + dy - padding, x + dx - padding
        if 0 <= row < size and 0 <= column < size:
            matrix[o, y, x, c, row, column] = weight[o, c, dy, dx]
    return matrix.reshape(out_channels * out * out, -1)


def merged(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias of a convolution followed by BatchNorm in eval mode, folded into one (float64)."""
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).double().detach().numpy()
    weight = conv.weight.double().detach().numpy() * scale[:, None, None, None]
    bias = (conv.bias.double() - bn.running_mean.double()).detach().numpy() * scale + bn.bias.double().detach().numpy()
    return weight, bias


def stabilised(values: np.ndarray, epsilon: float = 1e-6) -> np.ndarray:
    return values + epsilon * np.where(values >= 0, 1.0, -1.0)


def spread_bias(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """A fully connected layer's rule: LRP-ε's shares x_i w_ji / z_j, plus the bias's share b_j / z_j handed to the
    inputs in proportion to |x_i w_ji|."""
    contributions = weight * x[None, :]  # (out, in)
    share = relevance / stabilised(contributions.sum(1) + bias)
    spread = share * bias / stabilised(np.abs(contributions).sum(1))
    return contributions.T @ share + np.abs(contributions).T @ spread


def brute_force_lrp(network: nn.Sequential, x: np.ndarray, low: np.ndarray, high: np.ndarray, weights: np.ndarray,
                    offset: float) -> np.ndarray:  # fmt: skip
    """LRP of one input (2, 6, 6) in float64, layer by layer as the rules are written: the head s = w·z + offset and
    the linear layer spread their biases' shares, ZPlus on the second convolution and ZBox (bounds ``low`` and
    ``high``) on the input convolution leave their biases out, max-pooling hands each pooled unit's relevance to
    its maximum."""
    w1, b1 = merged(network[0], network[1])
    w2, b2 = merged(network[4], network[5])
    dense1, dense2 = dense_conv(w1, 6, 1), dense_conv(w2, 3, 0)
    dense3, b3 = network[8].weight.double().detach().numpy(), network[8].bias.double().detach().numpy()
    a1 = np.maximum(dense1 @ x.ravel() + np.repeat(b1, 36), 0).reshape(3, 6, 6)
    windows = a1.reshape(3, 3, 2, 3, 2).transpose(0, 1, 3, 2, 4).reshape(3, 3, 3, 4)
    pooled = windows.max(-1).ravel()
    a2 = np.maximum(dense2 @ pooled + np.repeat(b2, 4), 0)
    z = dense3 @ a2 + b3
    score = weights @ z + offset
    r_z = spread_bias(z, weights[None, :], np.array([offset]), np.array([score]))
    r_a2 = spread_bias(a2, dense3, b3, r_z)
    positive = np.clip(dense2, 0, None)
    r_pooled = pooled * (positive.T @ (r_a2 / stabilised(positive @ pooled)))  # ZPlus (inputs ≥ 0)
    r_a1 = np.zeros((3, 3, 3, 4))
    winners = windows.reshape(-1, 4).argmax(-1)
    r_a1.reshape(-1, 4)[np.arange(len(winners)), winners] = r_pooled
    r_a1 = r_a1.reshape(3, 3, 3, 2, 2).transpose(0, 1, 3, 2, 4).reshape(-1)
    plus, minus = np.clip(dense1, 0, None), np.clip(dense1, None, 0)
    lows, highs = np.repeat(low, 36), np.repeat(high, 36)
    g = r_a1 / stabilised(dense1 @ x.ravel() - plus @ lows - minus @ highs)  # ZBox
    return (x.ravel() * (dense1.T @ g) - lows * (plus.T @ g) - highs * (minus.T @ g)).reshape(2, 6, 6)


@pytest.mark.parametrize("loss", ["cel", "rl", "sml"])
def test_the_composite_equals_a_brute_force_lrp_of_a_small_network(loss):
    network = small_network()
    x = torch.randn(6, 2, 6, 6, generator=torch.Generator().manual_seed(5))
    low, high = torch.tensor([-1.5, -2.0]), torch.tensor([1.8, 1.2])  # some inputs lie outside: ZBox still applies
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    rule = build_rule(loss, 5, {"threshold": 0.0})
    bounds = {"0": (low.view(1, -1, 1, 1), high.view(1, -1, 1, 1))}
    (got,), scores = input_relevance(network, (x,), rule, targets, bounds)
    logits = network(x).detach()
    torch.testing.assert_close(scores, rule.ranking_scores(logits)[torch.arange(6), targets])
    head = decision_head(rule, logits, targets)
    for n in range(len(x)):
        expected = brute_force_lrp(network, x[n].double().numpy(), low.double().numpy(), high.double().numpy(),
                                   head.weight[n].double().numpy(), float(head.bias[n]))  # fmt: skip
        np.testing.assert_allclose(got[n].numpy(), expected, rtol=0, atol=2e-4 * np.abs(expected).max())
        assert got[n].sum().item() == pytest.approx(float(scores[n]), rel=1e-3)  # and the rules conserve it


# -- conservation on a trained model ------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["cel", "rl", "sml"])
def test_a_trained_models_relevance_sums_to_each_losss_decision_score(trained_demo, loss):
    root, _ = trained_demo
    model, _ = load_model(model_path(root), torch.device("cpu"))  # its biases, any loss's head
    encoded = root / "encoded"
    statistics = read_band_statistics(encoded / "band_statistics.csv")
    split = EncodedSplit(encoded, "test")
    rows = np.arange(min(32, len(read_patch_names(encoded, "test"))))
    inputs = BandNormalizer(statistics)(split.gather(rows))
    labels = torch.as_tensor(split.labels[rows]).bool()
    targets = torch.where(labels.any(1), labels.float().argmax(1), 0)  # a class each patch carries
    rule = build_rule(loss, 19, {"threshold": 0.0})
    bounds = input_bounds("kbranch", statistics, zbox_bounds(encoded))
    parts, scores = input_relevance(model, inputs, rule, targets, bounds)
    logits = model(*inputs).detach()
    torch.testing.assert_close(scores, rule.ranking_scores(logits)[torch.arange(len(rows)), targets])
    ratio = sum(p.sum(dim=(1, 2, 3)) for p in parts) / scores
    explained = ~constant_scores(decision_head(rule, logits, targets))  # SML's sole supported class: a constant
    assert explained.any()
    within = ((ratio - 1).abs() <= 0.05)[explained]
    assert within.float().mean() >= 0.95, ratio


# -- residual networks (timm ResNets on the stacked bands) ---------------------------------------------

#: How far a ResNet's input relevance may lie from the explained score, relative to it: the stabilisers' share
#: (measured: about 1e-5 at worst, on random inputs and on the demo's patches).
RESIDUAL_TOLERANCE = 1e-4
STACKED_BANDS = ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09")


def stacked_bounds(low: float = -3.0, high: float = 3.0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {"backbone.conv1": (torch.full((1, 12, 1, 1), low), torch.full((1, 12, 1, 1), high))}


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("loss", ["cel", "rl", "sml"])
def test_a_resnets_relevance_sums_to_each_losss_decision_score(arch, loss):
    model = trained_like_model(arch)
    x = random_inputs(3, scale=2)  # 60 × 60 when stacked, for speed
    targets = torch.tensor([0, 7, 18])
    rule = build_rule(loss, 19, {"threshold": 0.0})
    parts, scores = input_relevance(model, x, rule, targets, stacked_bounds())
    logits = model(*x).detach()  # the merged model's scores agree up to rounding
    torch.testing.assert_close(scores, rule.ranking_scores(logits)[torch.arange(3), targets], rtol=1e-5, atol=1e-5)
    explained = ~constant_scores(decision_head(rule, logits, targets))
    assert explained.any()
    ratio = sum(p.sum(dim=(1, 2, 3)) for p in parts) / scores
    assert ((ratio - 1).abs()[explained] <= RESIDUAL_TOLERANCE).all(), ratio


def test_each_native_pixel_gets_the_relevance_of_its_stacked_copies():
    model = trained_like_model("resnet18")
    x = random_inputs(2, scale=2)  # any size the groups' ratios keep: 60, 30 and 10 pixels
    targets = torch.tensor([3, 9])
    parts, scores = input_relevance(model, x, None, targets, stacked_bounds())
    (whole,), whole_scores = input_relevance(model.backbone, (stack_bands(*x),), None, targets,
                                             {"conv1": stacked_bounds()["backbone.conv1"]})  # fmt: skip
    torch.testing.assert_close(scores, whole_scores)
    channels = np.cumsum([0] + [len(group.bands) for group in BAND_GROUPS])
    for part, start, stop in zip(parts, channels[:-1], channels[1:], strict=True):
        n, c, size, _ = part.shape
        factor = whole.shape[-1] // size
        blocks = whole[:, start:stop].reshape(n, c, size, factor, size, factor).sum(dim=(3, 5))
        torch.testing.assert_close(part, blocks, rtol=1e-5, atol=1e-6 * float(blocks.abs().max()))


def test_a_resnets_rules_cover_every_layer_that_needs_one():
    model = trained_like_model("resnet18")
    bounds = stacked_bounds()
    composite = lrp_composite(model, bounds)
    with Composite(canonizers=lrp_canonizers(model)).context(model):
        rules = {name: composite.module_map({}, name, m) for name, m in model.named_modules()}
        kinds = {name: type(rule).__name__ for name, rule in rules.items() if rule is not None}
        layers = dict(model.named_modules())
    boxed = [name for name, kind in kinds.items() if kind == "ZBox"]
    assert boxed == ["backbone.conv1"]
    convs = [name for name, m in layers.items() if isinstance(m, nn.Conv2d) and name != "backbone.conv1"]
    assert len(convs) == 19 and all(kinds[name] == "ZPlus" for name in convs)  # downsampling shortcuts too
    assert kinds["backbone.fc"] == "EpsilonSpreadBias"
    normed = sorted(name for name, kind in kinds.items() if kind == "Norm")
    assert normed == sorted(["backbone.global_pool.pool"] + [f"backbone.layer{i}.{j}.canonizer_sum"
                                                             for i in range(1, 5) for j in range(2)])  # fmt: skip


def test_a_resnets_input_bounds_are_the_stacked_bands_in_channel_order():
    mean = {band: 100.0 * (i + 1) for i, band in enumerate(BANDS)}
    std = {band: 10.0 * (i + 1) for i, band in enumerate(BANDS)}
    low = {band: 50.0 * i for i, band in enumerate(BANDS)}
    high = {band: 9000.0 + 7.0 * i for i, band in enumerate(BANDS)}
    bounds = input_bounds("resnet18", BandStatistics(mean, std), BoxBounds(low, high, "hand"))
    assert list(bounds) == ["backbone.conv1"]
    got_low, got_high = bounds["backbone.conv1"]
    assert got_low.shape == got_high.shape == (1, 12, 1, 1)
    expected_low = [(low[b] - mean[b]) / std[b] for b in STACKED_BANDS]
    expected_high = [(high[b] - mean[b]) / std[b] for b in STACKED_BANDS]
    torch.testing.assert_close(got_low.flatten(), torch.tensor(expected_low))
    torch.testing.assert_close(got_high.flatten(), torch.tensor(expected_high))
