"""Training: exact resumption, SIGTERM, non-finite losses, the constant baseline, speed settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from benloss.evaluation.metrics import MultiLabelMetrics
from benloss.facts.bands import BAND_GROUPS
from benloss.training.batches import batch_plan, fits_on_device
from benloss.training.models import KBranchCNN
from benloss.training.train import (
    NonFiniteLoss,
    TrainConfig,
    Trainer,
    constant_baseline,
    rmsprop,
    train,
)

from ..support import ROOT
from .support import config, deterministic, train_until_crash


def test_resumed_history_equals_an_uninterrupted_one(demo_encoded, demo_labels, tmp_path, monkeypatch):
    counts = demo_labels / "class_counts.csv"
    reference = train(config(), demo_encoded, counts, tmp_path / "straight")
    train_until_crash(config(), 3, demo_encoded, counts, tmp_path / "resumed", monkeypatch)
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert not (tmp_path / "resumed" / "model.pt").exists()
    resumed = train(config(), demo_encoded, counts, tmp_path / "resumed")
    pd.testing.assert_frame_equal(deterministic(resumed), deterministic(reference), check_exact=True)
    first = torch.load(tmp_path / "straight" / "model.pt", weights_only=False)["state_dict"]
    second = torch.load(tmp_path / "resumed" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()


def test_checkpoint_of_other_settings_is_ignored(demo_encoded, demo_labels, tmp_path, monkeypatch):
    counts = demo_labels / "class_counts.csv"
    train_until_crash(config(lr=1e-3), 2, demo_encoded, counts, tmp_path / "run", monkeypatch)
    trainer = Trainer(config(), demo_encoded, counts, tmp_path / "run")
    trainer.try_resume()
    assert trainer.start_epoch == 1


def test_history_columns_and_outputs(demo_encoded, demo_labels, tmp_path):
    history = train(config(loss="rl", epochs=2), demo_encoded, demo_labels / "class_counts.csv", tmp_path)
    assert list(history["epoch"]) == [1, 2]
    assert {"train_loss", "val_loss", "f1_samples", "f1_micro", "f1_macro", "zero_grad_fraction"} <= set(history)
    assert np.load(tmp_path / "val_scores.npy").shape[1] == 19
    for name in ("model.pt", "history.csv", "baseline.json", "run.json"):
        assert (tmp_path / name).exists()


def test_non_finite_loss_stops_with_epoch_batch_and_loss(demo_encoded, demo_labels, tmp_path, monkeypatch):
    trainer = Trainer(config(loss="hl"), demo_encoded, demo_labels / "class_counts.csv", tmp_path)
    monkeypatch.setattr(trainer, "loss", lambda scores, targets: scores.sum() * float("nan"))
    with pytest.raises(NonFiniteLoss, match=r"hl: loss is nan at epoch 1, batch 0"):
        trainer.train_epoch(1)


@pytest.mark.parametrize("sync_steps", [2, 100])
def test_non_finite_loss_names_its_batch_between_syncs(demo_encoded, demo_labels, tmp_path, monkeypatch, sync_steps):
    """Losses are read back every SYNC_STEPS steps; the first bad batch is still the one named."""
    monkeypatch.setattr("benloss.training.train.SYNC_STEPS", sync_steps)
    trainer = Trainer(config(loss="cel", batch_size=2), demo_encoded, demo_labels / "class_counts.csv", tmp_path)
    n_batches = trainer.train_split.n_images // 2
    assert n_batches > 6
    real, calls = trainer.loss, []

    def inf_from_batch_3(scores, targets):
        calls.append(1)
        return real(scores, targets) * (float("inf") if len(calls) >= 4 else 1.0)

    monkeypatch.setattr(trainer, "loss", inf_from_batch_3)
    with pytest.raises(NonFiniteLoss, match=r"cel: loss is inf at epoch 2, batch 3"):
        trainer.train_epoch(2)
    # Training stops at the first read-back after the bad batch: batch 3 with syncs every 2, else the epoch's end.
    assert len(calls) == (4 if sync_steps == 2 else n_batches)


@pytest.mark.parametrize("sync_steps", [1, 100])
def test_epoch_totals_do_not_depend_on_the_read_backs(demo_encoded, demo_labels, tmp_path, monkeypatch, sync_steps):
    """Read-backs every step (ending on one: nothing left to check at the end) or once: the same image-weighted mean."""
    monkeypatch.setattr("benloss.training.train.SYNC_STEPS", sync_steps)
    trainer = Trainer(config(loss="cel", batch_size=4), demo_encoded, demo_labels / "class_counts.csv", tmp_path)
    real, seen = trainer.loss, []

    def recorded(scores, targets):
        value = real(scores, targets)
        seen.append((value.item(), len(scores)))
        return value

    monkeypatch.setattr(trainer, "loss", recorded)
    mean_loss, zero_grad, images = trainer.train_epoch(1)
    assert images == sum(n for _, n in seen) == trainer.train_split.n_images // 4 * 4
    assert mean_loss == pytest.approx(sum(value * n for value, n in seen) / images, rel=1e-12)
    assert 0.0 <= zero_grad <= 1.0


def test_sigterm_saves_and_exits_then_resumes(demo_encoded, demo_labels, tmp_path):
    out = tmp_path / "job"
    command = [
        sys.executable, "-m", "benloss", "train", "--encoded", str(demo_encoded), "--class-counts",
        str(demo_labels / "class_counts.csv"), "--out", str(out), "--loss", "cel", "--model", '{"width": 8}',
        "--training", '{"epochs": 20, "batch_size": 8}',
    ]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert (out / "checkpoint.pt").exists()
    stopped = time.time()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert time.time() - stopped < 20
    assert "SIGTERM" in stderr
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["epoch"] >= 1
    assert not (out / "model.pt").exists()
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {out / 'checkpoint.pt'} after epoch {state['epoch']}" in resumed.stderr
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == list(range(1, 21))


def test_batch_plan_is_a_seeded_permutation_without_a_batch_of_one():
    plan = batch_plan(33, 8, True, seed=4, epoch=2)
    assert [len(b) for b in plan] == [8, 8, 8, 8]
    assert len(np.unique(np.concatenate(plan))) == 32
    assert all(np.array_equal(a, b) for a, b in zip(plan, batch_plan(33, 8, True, seed=4, epoch=2), strict=True))
    assert not np.array_equal(np.concatenate(plan), np.concatenate(batch_plan(33, 8, True, seed=4, epoch=3)))
    assert np.array_equal(np.concatenate(batch_plan(33, 8, False, 0, 0)), np.arange(33))


def test_constant_baseline_by_brute_force():
    rng = np.random.default_rng(0)
    train_labels = (rng.random((200, 6)) < [0.6, 0.5, 0.3, 0.1, 0.05, 0.02]).astype(np.uint8)
    val_labels = (rng.random((80, 6)) < [0.6, 0.5, 0.3, 0.1, 0.05, 0.02]).astype(np.uint8)
    baseline = constant_baseline(train_labels, val_labels)
    order = np.argsort(-train_labels.sum(0), kind="stable")
    scores = []
    for k in range(1, 7):
        metrics = MultiLabelMetrics(6)
        prediction = np.zeros_like(val_labels, bool)
        prediction[:, order[:k]] = True
        metrics.update(prediction, val_labels)
        scores.append(metrics.compute()["f1_micro"])
    assert baseline["f1_micro"] == pytest.approx(max(scores))
    assert baseline["k"] == int(np.argmax(scores)) + 1


def test_device_resident_data_gives_the_same_history(demo_encoded, demo_labels, tmp_path):
    counts = demo_labels / "class_counts.csv"
    loaded = train(config(epochs=2), demo_encoded, counts, tmp_path / "loader")
    resident = train(config(epochs=2, data_on_device=True), demo_encoded, counts, tmp_path / "resident")
    pd.testing.assert_frame_equal(deterministic(resident), deterministic(loaded), check_exact=True)


def test_fits_on_device_keeps_room_for_training(monkeypatch):
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (60 * gib, 80 * gib))
    cuda = torch.device("cuda", 0)
    # 80 GiB card with 60 GiB free: 15 % of the card (12 GiB) stays free for training, so 48 GiB fit.
    assert fits_on_device(48 * gib, cuda)
    assert not fits_on_device(48 * gib + 1, cuda)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10 * gib, 16 * gib))
    assert fits_on_device(6 * gib, cuda) and not fits_on_device(6 * gib + 1, cuda)  # at least 4 GiB stay free
    assert fits_on_device(10**15, torch.device("cpu"))


def test_data_that_do_not_fit_are_loaded_from_the_host(demo_encoded, demo_labels, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("benloss.training.train.fits_on_device", lambda nbytes, device: False)
    trainer = Trainer(config(data_on_device=True), demo_encoded, demo_labels / "class_counts.csv", tmp_path)
    assert trainer.resident is None
    assert "do not fit on cpu" in caplog.text
    assert trainer.train_epoch(1)[2] > 0


def test_channels_last_computes_the_same_gradients():
    """The memory layout is a speed setting: in float64 both layouts give the same scores and gradients.

    (In float32 training-mode BatchNorm amplifies the layouts' different rounding to ~1 % in some gradients;
    dropout draws its masks in memory order, so it is off here: a channels-last run draws other masks.)
    """
    torch.manual_seed(0)
    inputs = [torch.randn(8, len(g.bands), g.size, g.size, dtype=torch.float64) for g in BAND_GROUPS]
    reference = KBranchCNN(16).double()
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        model = KBranchCNN(16).double().to(memory_format=layout).train()
        model.load_state_dict(reference.state_dict())
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        scores = model(*(x.contiguous(memory_format=layout) for x in inputs))
        (scores * torch.linspace(-1, 1, scores.shape[1], dtype=torch.float64)).sum().backward()
        results.append((scores, {name: p.grad for name, p in model.named_parameters()}))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-10, atol=1e-12)
    for name, gradient in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], gradient, rtol=1e-9, atol=1e-12)


def test_channels_last_reaches_the_model_and_its_inputs(demo_encoded, demo_labels, tmp_path):
    trainer = Trainer(config(channels_last=True), demo_encoded, demo_labels / "class_counts.csv", tmp_path)
    assert trainer.model.branch_10m.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    trainer.model.branch_20m.conv1.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    trainer.train_epoch(1)
    assert seen and all(seen)
    assert config(channels_last=True).fingerprint() == config().fingerprint()


def keras_rmsprop_reference(weights, gradients, lr, rho, eps, decay):
    """tf.keras's RMSprop in float64, by hand: v from zero, v ← ρv + (1 − ρ)g², w ← w − lr g / (√v + ε)."""
    w = [x.clone() for x in weights]
    v = [torch.zeros_like(x) for x in weights]
    for step_gradients in gradients:
        for i, g in enumerate(step_gradients(w)):
            g = g + decay[i] * w[i]
            v[i] = rho * v[i] + (1 - rho) * g**2
            w[i] = w[i] - lr * g / (v[i].sqrt() + eps)
    return w


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_rmsprop_has_keras_semantics(weight_decay):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    run_config = config(lr=1e-2, weight_decay=weight_decay)
    optimizer = rmsprop(model, run_config)
    x = torch.randn(5, 3, dtype=torch.float64)
    scale = 1e-6  # gradients near ε: ε inside the square root, or an accumulator from 1, would differ by far

    def gradients(w):
        return torch.autograd.grad(scale * ((x @ w[0].T + w[1]) ** 3).sum(), w)

    start = [p.detach().clone().requires_grad_(True) for p in (model.weight, model.bias)]
    decay = [weight_decay, 0.0]  # kernels only, never biases
    expected = keras_rmsprop_reference(start, [gradients] * 4, run_config.lr, 0.9, 1e-7, decay)
    for _ in range(4):
        optimizer.zero_grad()
        (scale * (model(x) ** 3).sum()).backward()
        optimizer.step()
    assert run_config.rmsprop_alpha == 0.9 and run_config.rmsprop_eps == 1e-7
    torch.testing.assert_close(model.weight, expected[0].detach(), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(model.bias, expected[1].detach(), rtol=1e-12, atol=1e-15)


def test_no_weight_decay_by_default_and_decay_changes_the_fingerprint():
    assert TrainConfig(loss="cel").weight_decay == 0
    assert config(weight_decay=2e-5).fingerprint() != config().fingerprint()


def test_train_command_takes_the_config_sections_whole(monkeypatch, tmp_path):
    from benloss import cli
    from benloss.training import train as train_module

    seen = []
    monkeypatch.setattr(train_module, "train", lambda run_config, *args: seen.append(run_config))
    cli.main(["train", "--encoded", str(tmp_path), "--class-counts", str(tmp_path / "c.csv"), "--out", str(tmp_path),
              "--loss", "cel", "--training", '{"weight_decay": 2e-5, "epochs": 3, "losses": ["cel"], "mem_mb": 9}',
              "--model", '{"width": 16}'])  # fmt: skip
    assert (seen[0].weight_decay, seen[0].epochs, seen[0].width) == (2e-5, 3, 16)
    assert seen[0].batch_size == TrainConfig(loss="cel").batch_size  # absent keys keep their defaults
