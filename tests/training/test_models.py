"""The K-Branch CNN: shapes, TensorFlow "same" padding, initialisation, regularisation."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benloss.facts.bands import BAND_GROUPS, BandStatistics
from benloss.training.models import (
    INPUT_CONVS,
    BandNormalizer,
    KBranchCNN,
    conv_block,
    count_parameters,
    parameter_groups,
)


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


def tensorflow_style_block(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """TF "same" for a 2×2 kernel: pad one zero row and column at the bottom/right, convolve, BatchNorm, ReLU."""
    conv, bn = layers[0], layers[1]
    convolved = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias)
    return F.relu(F.batch_norm(convolved, None, None, bn.weight, bn.bias, training=True, eps=bn.eps))


def test_even_kernel_pads_bottom_right_like_tensorflow():
    layers = nn.Sequential(*[m for _, m in conv_block(2, 4, 2)]).eval()
    conv = layers[0]
    x = torch.randn(1, 2, 7, 7)
    bn = layers[1]
    reference = F.relu(bn(F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias)))
    torch.testing.assert_close(layers(x), reference)


def test_batchnorm_of_an_even_kernel_sees_tensorflows_grid_in_training():
    torch.manual_seed(0)
    layers = nn.Sequential(*[m for _, m in conv_block(3, 4, 2)]).train()
    nn.init.normal_(layers[0].bias)  # a non-zero bias makes the padded border differ from the interior
    x = torch.randn(5, 3, 20, 20) + 2.0
    torch.testing.assert_close(layers(x), tensorflow_style_block(layers, x))
    assert layers(x).shape == (5, 4, 20, 20)


def test_batchnorm_running_statistics_are_tensorflows():
    torch.manual_seed(1)
    layers = nn.Sequential(*[m for _, m in conv_block(3, 4, 2)]).train()
    x = torch.randn(6, 3, 20, 20) + 1.0
    layers(x)
    conv = layers[0]
    convolved = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias).double()
    expected_mean = 0.01 * convolved.mean(dim=(0, 2, 3))  # TF momentum 0.99 from a zero start
    torch.testing.assert_close(layers[1].running_mean.double(), expected_mean, rtol=1e-5, atol=1e-7)


def test_whole_model_trains_on_the_60m_branch_grid_tensorflow_uses():
    model = KBranchCNN(width=8).train()
    seen = []
    model.branch_60m.bn1.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[-2:]))
    model(*inputs(2))
    assert seen == [(20, 20)]


def test_xavier_initialisation_and_zero_biases():
    model = KBranchCNN(width=64)
    conv = model.branch_10m.conv1
    fan_in, fan_out = 4 * 25, 32 * 25
    bound = np.sqrt(6 / (fan_in + fan_out))
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))


def test_weight_decay_only_on_kernels():
    model = KBranchCNN(width=16)
    decayed, plain = parameter_groups(model, 3e-4)
    kernels = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert {id(p) for p in decayed["params"]} == {id(p) for p in kernels}
    assert decayed["weight_decay"] == 3e-4 and plain["weight_decay"] == 0
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
