"""A timm backbone on the twelve bands stacked at 120 × 120.

The 20 m and 60 m groups are brought to the 10 m grid by nearest-neighbour upsampling, on the device, inside the
model: 120 / 60 and 120 / 20 are whole factors, so every native pixel becomes a 2 × 2 or 6 × 6 block of copies. That
keeps each band's mean and standard deviation exactly (the statistics the inputs are normalised with, computed at
native resolution, hold for the stacked image too; ConfigILM's v2.0 statistics are for nearest-neighbour as well),
adds no value that was not measured, and lets an explanation's relevance flow back to the native pixels, each
summing its copies'. Channels follow ``BAND_GROUPS``: B02 B03 B04 B08, B05 B06 B07 B8A B11 B12, B01 B09.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from benloss.facts.bands import BAND_GROUPS

#: The 10 m grid every group is brought to.
STACKED_SIZE = BAND_GROUPS[0].size
#: How the coarser groups reach it.
INTERPOLATION = "nearest"


def stack_bands(*groups: Tensor) -> Tensor:
    """The band groups (N, bands, s, s), in ``BAND_GROUPS`` order, as one (N, 12, 120, 120) image: each coarser
    pixel repeated over the block of 10 m pixels it covers."""
    stacked = []
    for group, x in zip(BAND_GROUPS, groups, strict=True):
        factor = STACKED_SIZE // group.size
        stacked.append(x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3) if factor > 1 else x)
    return torch.cat(stacked, dim=1)


class StackedBands(nn.Module):
    """``forward(x10, x20, x60)``: the backbone's raw scores for the stacked image."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x10: Tensor, x20: Tensor, x60: Tensor) -> Tensor:
        return self.backbone(stack_bands(x10, x20, x60))
