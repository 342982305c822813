"""The K-Branch CNN: shapes, TensorFlow "same" padding, initialisation, regularisation."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benloss.bands import BAND_GROUPS, BandStatistics
from benloss.models import INPUT_CONVS, BandNormalizer, KBranchCNN, conv_block, count_parameters, parameter_groups


def inputs(n=3):
    return tuple(torch.randn(n, len(g.bands), g.size, g.size) for g in BAND_GROUPS)


def test_output_is_raw_scores_for_19_classes():
    model = KBranchCNN(width=32).eval()
    scores = model(*inputs())
    assert scores.shape == (3, 19)
    assert (scores < 0).any()  # no sigmoid inside


def test_layer_shapes_follow_the_official_network():
    model = KBranchCNN(width=1024)
    assert model.branch_10m.fc.in_features == 30 * 30 * 64
    assert model.branch_20m.fc.in_features == 30 * 30 * 64
    assert model.branch_60m.fc.in_features == 20 * 20 * 32
    assert model.fusion.fc.in_features == 3 * 1024 and model.classifier.in_features == 1024
    assert [model.get_submodule(name).kernel_size for name in INPUT_CONVS] == [(5, 5), (3, 3), (2, 2)]
    bn = model.branch_10m.bn1
    assert bn.eps == 1e-3 and bn.momentum == 0.01


def test_even_kernel_pads_bottom_right_like_tensorflow():
    layers = nn.Sequential(*[m for _, m in conv_block(2, 4, 2)]).eval()
    conv = layers[0]
    x = torch.randn(1, 2, 7, 7)
    bn = layers[1]
    reference = F.relu(bn(F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias)))
    torch.testing.assert_close(layers(x), reference)


def test_xavier_initialisation_and_zero_biases():
    model = KBranchCNN(width=64)
    conv = model.branch_10m.conv1
    fan_in, fan_out = 4 * 25, 32 * 25
    bound = np.sqrt(6 / (fan_in + fan_out))
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))


def test_weight_decay_only_on_kernels():
    model = KBranchCNN(width=16)
    decayed, plain = parameter_groups(model)
    kernels = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert {id(p) for p in decayed["params"]} == {id(p) for p in kernels}
    assert decayed["weight_decay"] == 2e-5 and plain["weight_decay"] == 0
    assert sum(p.numel() for g in (decayed, plain) for p in g["params"]) == count_parameters(model)


def test_normalizer_standardises_each_band():
    official = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    mean = {b: 100.0 * i for i, b in enumerate(official)}
    std = {b: 10.0 + i for i, b in enumerate(official)}
    raw = {g.name: torch.full((1, len(g.bands), g.size, g.size), 500, dtype=torch.uint16) for g in BAND_GROUPS}
    x10, x20, x60 = BandNormalizer(BandStatistics(mean, std))(raw)
    assert x10[0, 0, 0, 0].item() == np.float32((500 - 100) / 11)  # B02 is channel 0 of the 10 m group
    assert x20[0, 3, 1, 1].item() == np.float32((500 - 800) / 18)  # B8A is channel 3 of the 20 m group
    assert x60[0, 1, 5, 5].item() == np.float32((500 - 900) / 19)  # B09 is channel 1 of the 60 m group
