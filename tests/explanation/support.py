"""What the explanation tests share: random inputs, a model with trained-like BatchNorm, a training statistics file.
No tests here."""

from __future__ import annotations

import torch
from torch import nn

from benloss.facts.bands import BAND_GROUPS, BANDS
from benloss.training.models import KBranchCNN


def random_inputs(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, len(gr.bands), gr.size, gr.size, generator=g) for gr in BAND_GROUPS)


def trained_like(width: int = 8, seed: int = 0) -> KBranchCNN:
    """A model with non-trivial BatchNorm statistics, as after training."""
    torch.manual_seed(seed)
    model = KBranchCNN(width)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def write_training_statistics(folder, low: dict, high: dict, columns: tuple[str, str] = ("p0.1", "p99.9")) -> None:
    """A ``training_band_statistics.csv`` as the encode stage writes it, ``low`` and ``high`` in ``columns`` and the
    other bound columns far off (mean and std are not read here)."""
    header = ["band", "mean", "std", "min", "max", "p0.1", "p99.9"]
    if columns == ("min", "max"):
        header = header[:5]  # a file written before the percentiles
    lines = [",".join(header)]
    for band in BANDS:
        values = {"band": band, "mean": 1000.0, "std": 500.0, "min": -1e9, "max": 1e9, "p0.1": -1e9, "p99.9": 1e9}
        values.update({columns[0]: low[band], columns[1]: high[band]})
        lines.append(",".join(str(values[c]) for c in header))
    (folder / "training_band_statistics.csv").write_text("\n".join(lines) + "\n")
