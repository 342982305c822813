"""The architectures a study trains, behind one interface: ``benloss.architectures.build.build_model(id, width,
n_classes)`` gives a module that takes the three normalised band groups ``(x10, x20, x60)`` and returns raw class
scores.

The paper's K-Branch CNN (``benloss.training.models``) reads each resolution group in its own branch; the timm
backbones (``benloss.architectures.stacked``) read the twelve bands stacked at 120 × 120. Importing the package
needs no PyTorch.
"""

from benloss.architectures.registry import (
    ARCHITECTURE_IDS,
    DEFAULT_ARCHITECTURE,
    Architecture,
    architecture,
)

__all__ = ["ARCHITECTURE_IDS", "DEFAULT_ARCHITECTURE", "Architecture", "architecture"]
