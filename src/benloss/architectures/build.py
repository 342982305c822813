"""Building a freshly initialised model of any registered architecture."""

from __future__ import annotations

from torch import nn

from benloss.architectures.registry import architecture
from benloss.architectures.stacked import StackedBands
from benloss.facts.bands import BANDS
from benloss.training.models import KBranchCNN


def timm_backbone(timm_name: str, n_classes: int, **kwargs) -> nn.Module:
    """timm's ``timm_name`` with twelve input channels and ``n_classes`` outputs, randomly initialised (no weights
    are fetched)."""
    import timm

    return timm.create_model(timm_name, pretrained=False, in_chans=len(BANDS), num_classes=n_classes, **kwargs)


def build_model(architecture_id: str, width: int, n_classes: int) -> nn.Module:
    """``forward(x10, x20, x60)`` → (N, n_classes) raw scores. ``width`` sets the K-Branch CNN's fully connected
    layers; a timm backbone has its own, and reads the bands stacked (``benloss.architectures.stacked``)."""
    entry = architecture(architecture_id)
    if entry.timm_name is None:
        return KBranchCNN(width, n_classes)
    return StackedBands(timm_backbone(entry.timm_name, n_classes, **entry.timm_kwargs))
