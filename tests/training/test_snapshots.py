"""Weight snapshots for the loss landscapes: at the configured epochs, the last one the final model's weights."""

from __future__ import annotations

import pytest
import torch

from benloss.architectures.build import build_model
from benloss.layout import snapshot_epochs
from benloss.training.train import train

from .support import config, train_until_crash


@pytest.mark.parametrize(("epochs", "snapshots", "expected"),
                         [(80, 16, [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80]),
                          (8, 4, [0, 2, 4, 6, 8]), (7, 3, [0, 2, 5, 7]), (3, 0, []), (2, 5, [0, 1, 2])])  # fmt: skip
def test_snapshot_epochs(epochs, snapshots, expected):
    assert snapshot_epochs(epochs, snapshots) == expected


def test_snapshots_are_written_and_survive_a_resumption(demo_encoded, demo_labels, tmp_path, monkeypatch):
    counts = demo_labels / "class_counts.csv"
    run = config(epochs=4)
    run.snapshots = 2  # after epochs 2 and 4
    train_until_crash(run, 3, demo_encoded, counts, tmp_path, monkeypatch)
    # The crashed job's snapshot waits outside the declared outputs (a failed job's cleanup removes those).
    assert not (tmp_path / "snapshots").exists()
    assert sorted(p.name for p in (tmp_path / "snapshots_in_progress").iterdir()) == ["snapshot00.pt", "snapshot01.pt"]
    train(run, demo_encoded, counts, tmp_path)
    assert not (tmp_path / "snapshots_in_progress").exists()
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [f"snapshot0{i}.pt" for i in range(3)]
    last = torch.load(tmp_path / "snapshots" / "snapshot02.pt", weights_only=False)
    final = torch.load(tmp_path / "model.pt", weights_only=False)["state_dict"]
    assert last["epoch"] == 4 and all(torch.equal(last["state_dict"][k], final[k]) for k in final)
    first = torch.load(tmp_path / "snapshots" / "snapshot01.pt", weights_only=False)
    assert first["epoch"] == 2 and not all(torch.equal(first["state_dict"][k], final[k]) for k in final)
    initial = torch.load(tmp_path / "snapshots" / "snapshot00.pt", weights_only=False)
    torch.manual_seed(run.seed)  # the trainer seeds everything before it builds the model
    fresh = build_model(run.architecture, run.width, 19).state_dict()
    assert initial["epoch"] == 0 and all(torch.equal(initial["state_dict"][k], fresh[k]) for k in fresh)
    assert run.fingerprint() == config(epochs=4).fingerprint()  # snapshots change no result


def test_a_checkpoint_without_the_snapshots_now_asked_for_is_not_resumed(
    demo_encoded, demo_labels, tmp_path, monkeypatch, caplog
):
    counts = demo_labels / "class_counts.csv"
    before = config(epochs=4)
    train_until_crash(before, 3, demo_encoded, counts, tmp_path, monkeypatch)  # no snapshots kept
    after = config(epochs=4)
    after.snapshots = 2
    with caplog.at_level("WARNING"):
        train(after, demo_encoded, counts, tmp_path)
    assert "the snapshots after epochs [0, 2] are not in" in caplog.text
    epochs = [torch.load(p, weights_only=False)["epoch"] for p in sorted((tmp_path / "snapshots").iterdir())]
    assert epochs == [0, 2, 4]
