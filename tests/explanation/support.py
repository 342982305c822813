"""What the explanation tests share: random inputs, models with trained-like BatchNorm, model folders, a training
statistics file. No tests here."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from benloss.architectures.build import build_model
from benloss.facts.bands import BAND_GROUPS, BANDS
from benloss.layout import MODEL_FILES, model_folder
from benloss.training.config import TrainConfig
from benloss.training.models import KBranchCNN


def random_inputs(n: int = 4, seed: int = 0, scale: int = 1) -> tuple[torch.Tensor, ...]:
    """Standard normal band groups at their sizes divided by ``scale`` (a divisor of 20, for the stacked models,
    which take any size the groups' ratios keep)."""
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, len(gr.bands), gr.size // scale, gr.size // scale, generator=g) for gr in BAND_GROUPS)


def randomise_batch_norm(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with non-trivial BatchNorm statistics and affine parameters, as after training."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def trained_like(width: int = 8, seed: int = 0) -> KBranchCNN:
    """A K-Branch CNN with non-trivial BatchNorm statistics, as after training."""
    torch.manual_seed(seed)
    return randomise_batch_norm(KBranchCNN(width))


def trained_like_model(architecture_id: str, seed: int = 0, n_classes: int = 19) -> nn.Module:
    """A registry model with non-trivial BatchNorm statistics, as after training."""
    torch.manual_seed(seed)
    return randomise_batch_norm(build_model(architecture_id, 8, n_classes))


def model_path(run: Path, loss: str = "cel", architecture_id: str = "kbranch", seed: int = 0) -> Path:
    """Where the layout puts a model's ``model.pt``."""
    return Path(model_folder(str(run), architecture_id, loss, seed)) / MODEL_FILES["model"]


def save_model(model: nn.Module, path: Path, config: TrainConfig, n_classes: int = 19) -> Path:
    """``model`` written as the trainer writes ``model.pt`` (no fitted own rule)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "config": asdict(config), "n_classes": n_classes, "own_rule": {}},
               path)  # fmt: skip
    return path


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
