"""Weight snapshots for the loss landscapes: at the configured epochs, the last one the final model's weights."""

from __future__ import annotations

import pytest
import torch

from benloss.layout import snapshot_epochs
from benloss.training.train import train

from .support import config, train_until_crash


@pytest.mark.parametrize(("epochs", "every", "expected"),
                         [(80, 5, [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80]),
                          (7, 3, [3, 6, 7]), (3, 0, []), (2, 5, [2])])  # fmt: skip
def test_snapshot_epochs(epochs, every, expected):
    assert snapshot_epochs(epochs, every) == expected


def test_snapshots_are_written_and_survive_a_resumption(demo_encoded, demo_labels, tmp_path, monkeypatch):
    counts = demo_labels / "class_counts.csv"
    run = config(epochs=3)
    run.snapshots = 2
    train_until_crash(run, 3, demo_encoded, counts, tmp_path, monkeypatch)
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["epoch002.pt"]
    train(run, demo_encoded, counts, tmp_path)
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["epoch002.pt", "epoch003.pt"]
    last = torch.load(tmp_path / "snapshots" / "epoch003.pt", weights_only=False)
    final = torch.load(tmp_path / "model.pt", weights_only=False)["state_dict"]
    assert last["epoch"] == 3 and all(torch.equal(last["state_dict"][k], final[k]) for k in final)
    second = torch.load(tmp_path / "snapshots" / "epoch002.pt", weights_only=False)["state_dict"]
    assert not all(torch.equal(second[k], final[k]) for k in final)
    assert run.fingerprint() == config(epochs=3).fingerprint()  # snapshots change no result
