"""training.optimizer and training.schedule: the learning rate per step by hand, and exact resumption with both."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from benloss.errors import BenlossError
from benloss.training.batches import batch_plan
from benloss.training.train import Trainer, learning_rate_factor, train

from .support import config, deterministic, train_until_crash


def test_warmup_then_cosine_by_hand():
    total, warmup = 10, 2
    factors = [learning_rate_factor(step, total, warmup, "cosine") for step in range(total)]
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert factors == pytest.approx(expected)
    assert [learning_rate_factor(step, total, 0, "constant") for step in range(total)] == [1.0] * total
    assert learning_rate_factor(3, total, 4, "constant") == 1.0


def test_the_paper_recipe_keeps_a_constant_rate(demo_encoded, demo_labels, tmp_path):
    trainer = Trainer(config(), demo_encoded, demo_labels / "class_counts.csv", tmp_path)
    assert isinstance(trainer.optimizer, torch.optim.RMSprop)
    trainer.train_epoch(1)
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-4


def test_adamw_follows_warmup_and_cosine_per_step(demo_encoded, demo_labels, tmp_path):
    run = config(optimizer="adamw", lr=1e-3, weight_decay=0.01, schedule="cosine", warmup_epochs=1, epochs=3)
    trainer = Trainer(run, demo_encoded, demo_labels / "class_counts.csv", tmp_path)
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    steps = len(batch_plan(trainer.train_split.n_images, run.batch_size, True, run.seed, 1))
    assert steps > 1
    seen = []
    for epoch in (1, 2):
        trainer.train_epoch(epoch)
        seen.append(trainer.optimizer.param_groups[0]["lr"])
    # after epoch 1 the warm-up is over (factor of step `steps`: the cosine's start); after epoch 2 half-way down
    assert seen[0] == pytest.approx(1e-3)
    assert seen[1] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * steps / (2 * steps))))


def test_resumed_cosine_run_equals_an_uninterrupted_one(demo_encoded, demo_labels, tmp_path, monkeypatch):
    counts = demo_labels / "class_counts.csv"
    run = config(optimizer="adamw", lr=1e-3, schedule="cosine", warmup_epochs=1)
    reference = train(run, demo_encoded, counts, tmp_path / "straight")
    train_until_crash(run, 3, demo_encoded, counts, tmp_path / "resumed", monkeypatch)
    resumed = train(run, demo_encoded, counts, tmp_path / "resumed")
    pd.testing.assert_frame_equal(deterministic(resumed), deterministic(reference), check_exact=True)


def test_the_recipe_enters_the_fingerprint_only_off_the_paper_defaults():
    assert config().fingerprint() == config(optimizer="rmsprop", schedule="constant").fingerprint()
    assert config().fingerprint() != config(optimizer="adamw").fingerprint()
    assert config().fingerprint() != config(architecture="resnet18").fingerprint()
    assert config(schedule="cosine").fingerprint() != config(schedule="cosine", warmup_epochs=1).fingerprint()


@pytest.mark.parametrize(("setting", "message"), [({"optimizer": "sgd"}, "training.optimizer 'sgd'"),
                                                  ({"schedule": "step"}, "training.schedule 'step'")])  # fmt: skip
def test_unknown_optimizer_or_schedule_names_the_choices(demo_encoded, demo_labels, tmp_path, setting, message):
    with pytest.raises(BenlossError, match=message):
        Trainer(config(**setting), demo_encoded, demo_labels / "class_counts.csv", tmp_path)
