"""The K-Branch CNN of Sumbul & Demir (BigEarthNet), in PyTorch.

One convolutional branch per resolution group (10 m, 20 m, 60 m), each ending in a fully connected
layer of ``width`` units; the three are concatenated and fused by another fully connected layer before
the 19 raw class scores. Layers follow the official TensorFlow code: "same" padding (bottom/right only
for the even 2×2 kernels), BatchNorm with eps 1e-3 and TF momentum 0.99, Xavier initialisation.
The model takes normalised inputs and returns raw scores, never probabilities.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from benloss.bands import BAND_GROUPS, BandStatistics

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's 0.99
WEIGHT_DECAY = 2e-5
#: Names of each branch's first convolution, the input layers an explanation maps its input rule to.
INPUT_CONVS: tuple[str, ...] = tuple(f"branch_{g.name}.conv1" for g in BAND_GROUPS)


class CropBottomRight(nn.Module):
    """Drop the last row and column: with symmetric padding 1, a 2×2 convolution then equals TF "same"."""

    def forward(self, x: Tensor) -> Tensor:
        return x[..., 1:, 1:]


def conv_block(in_channels: int, out_channels: int, kernel: int) -> list[tuple[str, nn.Module]]:
    """Conv (TF "same", stride 1) → BatchNorm → ReLU, as named layers.

    TF pads an even kernel's extra row and column at the bottom/right only; here the convolution pads
    symmetrically and the first row and column of its output are cropped, which is the same thing and
    keeps padding inside the convolution, where LRP's input rule treats it as absent.
    """
    even = kernel % 2 == 0
    layers: list[tuple[str, nn.Module]] = [
        ("conv", nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)),
        ("bn", nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)),
        ("relu", nn.ReLU()),
    ]
    if even:
        layers.append(("crop", CropBottomRight()))
    return layers


def fc_block(in_features: int, out_features: int) -> list[tuple[str, nn.Module]]:
    """Linear → BatchNorm → ReLU, as named layers."""
    return [
        ("fc", nn.Linear(in_features, out_features)),
        ("fc_bn", nn.BatchNorm1d(out_features, eps=BN_EPS, momentum=BN_MOMENTUM)),
        ("fc_relu", nn.ReLU()),
    ]


def _branch(spec: list[tuple[int, int, bool]], in_channels: int, size: int, width: int) -> nn.Sequential:
    """A branch from (filters, kernel, pool-after) triples; dropout .25 after every conv, FC + dropout .5."""
    layers: list[tuple[str, nn.Module]] = []
    channels = in_channels
    for i, (filters, kernel, pool) in enumerate(spec, start=1):
        layers += [(f"{name}{i}", module) for name, module in conv_block(channels, filters, kernel)]
        if pool:
            layers.append((f"pool{i}", nn.MaxPool2d(2, 2)))
            size //= 2
        layers.append((f"drop{i}", nn.Dropout(0.25)))
        channels = filters
    layers.append(("flatten", nn.Flatten()))
    layers += fc_block(channels * size * size, width)
    layers.append(("fc_drop", nn.Dropout(0.5)))
    return nn.Sequential(OrderedDict(layers))


BRANCH_SPECS: dict[str, list[tuple[int, int, bool]]] = {
    "10m": [(32, 5, True), (32, 5, True), (64, 3, False)],
    "20m": [(32, 3, True), (32, 3, False), (64, 3, False)],
    "60m": [(32, 2, False), (32, 2, False), (32, 2, False)],
}


class KBranchCNN(nn.Module):
    """K-Branch CNN: ``forward(x10, x20, x60)`` → (N, n_classes) raw scores."""

    def __init__(self, width: int = 128, n_classes: int = 19) -> None:
        super().__init__()
        self.width = width
        for group in BAND_GROUPS:
            branch = _branch(BRANCH_SPECS[group.name], len(group.bands), group.size, width)
            self.add_module(f"branch_{group.name}", branch)
        self.fusion = nn.Sequential(
            OrderedDict(
                [*fc_block(len(BAND_GROUPS) * width, width), ("drop1", nn.Dropout(0.25)), ("drop2", nn.Dropout(0.5))]
            )
        )
        self.classifier = nn.Linear(width, n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform kernels and zero biases, as TensorFlow's defaults in the official code."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def branches(self) -> list[nn.Sequential]:
        return [getattr(self, f"branch_{g.name}") for g in BAND_GROUPS]

    def forward(self, x10: Tensor, x20: Tensor, x60: Tensor) -> Tensor:
        features = [branch(x) for branch, x in zip(self.branches(), (x10, x20, x60), strict=True)]
        return self.classifier(self.fusion(torch.cat(features, dim=1)))


def parameter_groups(model: nn.Module, weight_decay: float = WEIGHT_DECAY) -> list[dict]:
    """Weight decay on convolution and linear kernels only, as the official L2 regulariser."""
    decayed = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    ids = {id(p) for p in decayed}
    others = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]


class BandNormalizer(nn.Module):
    """Turn raw uint16 band values into per-band standardised float inputs, per resolution group."""

    def __init__(self, statistics: BandStatistics) -> None:
        super().__init__()
        for group in BAND_GROUPS:
            mean, std = statistics.group_arrays(group)
            self.register_buffer(f"mean_{group.name}", torch.from_numpy(mean).view(1, -1, 1, 1))
            self.register_buffer(f"std_{group.name}", torch.from_numpy(std).view(1, -1, 1, 1))

    def forward(self, raw: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        return tuple(
            (raw[g.name].float() - getattr(self, f"mean_{g.name}")) / getattr(self, f"std_{g.name}")
            for g in BAND_GROUPS
        )  # type: ignore[return-value]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
