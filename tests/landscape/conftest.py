"""A tiny trained K-Branch CNN with snapshots of its own, made once per session for the landscape tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benloss.landscape.directions import perturbed_names, random_direction
from benloss.layout import MODEL_FILES, SNAPSHOTS, snapshot
from benloss.training.config import TrainConfig
from benloss.training.train import load_model, train


@pytest.fixture(scope="session")
def trained(demo_encoded, demo_labels, tmp_path_factory) -> Path:
    """A model folder: ``model.pt`` of a 3-epoch CEL run and snapshots of epochs 1 to 3, the first two the final
    weights moved along two random directions (the trainer's own snapshots are not what is tested here), the last
    the final weights."""
    folder = tmp_path_factory.mktemp("model")
    train(TrainConfig(loss="cel", width=8, epochs=3, batch_size=8, threads=1), demo_encoded,
          demo_labels / "class_counts.csv", folder)  # fmt: skip
    model, _ = load_model(folder / MODEL_FILES["model"])
    final = model.state_dict()
    generator = torch.Generator().manual_seed(7)
    steps = [random_direction(model, generator) for _ in range(2)]
    (folder / SNAPSHOTS).mkdir()
    for epoch, (a, b) in enumerate([(0.3, 0.2), (0.1, 0.15), (0.0, 0.0)], start=1):
        state = {k: v.clone() for k, v in final.items()}
        offset = a * steps[0] + b * steps[1]
        start = 0
        for name in perturbed_names(model):
            size = state[name].numel()
            state[name] += offset[start : start + size].view_as(state[name])
            start += size
        torch.save({"epoch": epoch, "state_dict": state}, folder / SNAPSHOTS / snapshot(epoch))
    return folder
