"""The K-Branch CNN of Sumbul & Demir (BigEarthNet), in PyTorch.

One convolutional branch per resolution group (10 m, 20 m, 60 m), each ending in a fully connected
layer of ``width`` units; the three are concatenated and fused by another fully connected layer before
the 19 raw class scores. Layers follow the official TensorFlow code: "same" padding (bottom/right only
for the even 2×2 kernels, so BatchNorm sees TF's grid), BatchNorm with eps 1e-3 and TF momentum 0.99,
Xavier initialisation.
The model takes normalised inputs and returns raw scores, never probabilities.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benloss.facts.bands import BAND_GROUPS, BandStatistics

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's 0.99
#: Names of each branch's first convolution, the input layers an explanation maps its input rule to.
INPUT_CONVS: tuple[str, ...] = tuple(f"branch_{g.name}.conv1" for g in BAND_GROUPS)


class SameConv2d(nn.Conv2d):
    """Stride-1 convolution with TensorFlow's "same" padding.

    TF pads k − 1 zeros per axis, the odd one out at the bottom/right (an even kernel's extra row and
    column). The symmetric part is the convolution's own padding; the extra row and column are padded
    inside ``forward``, so the output has exactly TF's grid (what BatchNorm's batch statistics see) and
    LRP's input rule, which runs this ``forward`` on its bounds too, treats all padding as absent.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        before = (kernel - 1) // 2
        super().__init__(in_channels, out_channels, kernel, padding=before)
        extra = kernel - 1 - 2 * before
        self.extra_padding = (0, extra, 0, extra)

    def forward(self, x: Tensor) -> Tensor:
        if any(self.extra_padding):
            x = F.pad(x, self.extra_padding)
        return super().forward(x)


def conv_block(in_channels: int, out_channels: int, kernel: int) -> list[tuple[str, nn.Module]]:
    """Conv (TF "same", stride 1) → BatchNorm → ReLU, as named layers."""
    return [
        ("conv", SameConv2d(in_channels, out_channels, kernel)),
        ("bn", nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)),
        ("relu", nn.ReLU()),
    ]


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


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimiser groups with ``weight_decay`` on convolution and linear kernels only (biases and BatchNorm free).

    The official code declares L2 kernel regularisers but never adds their losses to the objective, so the
    study's default is 0 (``training.weight_decay``).
    """
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
