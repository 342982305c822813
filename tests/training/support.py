"""Helpers of the training tests (no tests here): a small run's config, its deterministic history, a crash."""

from __future__ import annotations

import pandas as pd
import pytest

from benloss.training.config import TrainConfig
from benloss.training.train import TIMING_COLUMNS, Trainer, train


def config(**overrides) -> TrainConfig:
    return TrainConfig(**({"loss": "wcel", "width": 8, "epochs": 3, "batch_size": 8, "threads": 1} | overrides))


def deterministic(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns=list(TIMING_COLUMNS))


class Crash(RuntimeError):
    pass


def train_until_crash(run_config: TrainConfig, crash_epoch: int, encoded, counts, outdir, monkeypatch) -> None:
    """Train with a crash at the start of ``crash_epoch`` (after the previous epoch's checkpoint)."""
    original = Trainer.train_epoch

    def crashing(self, epoch):
        if epoch == crash_epoch:
            raise Crash("killed")
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", crashing)
    with pytest.raises(Crash):
        train(run_config, encoded, counts, outdir)
    monkeypatch.setattr(Trainer, "train_epoch", original)
