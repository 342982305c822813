"""Checks on a CUDA device (`make gpu-check`): CUDA agrees with the CPU, resumption stays exact, bf16 stays finite.

They skip without CUDA; `benchmarks/gpu_check.py --smoke` runs them on the CPU to keep the code paths working.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from benloss.data.encode import write_random_encoded
from benloss.facts.bands import BAND_GROUPS, official_band_statistics
from benloss.training.losses import build_loss
from benloss.training.models import KBranchCNN
from benloss.training.train import train

from .support import config, deterministic, train_until_crash

# cuBLAS needs this before CUDA starts to run deterministically (resumption must be bit-exact).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """Random encoded splits: no archive or label stage, so the tests run where rasterio and pyarrow are missing."""
    return write_random_encoded(tmp_path_factory.mktemp("gpu") / "encoded", {"train": 24, "val": 8, "test": 8})


@pytest.fixture
def exact():
    """Deterministic kernels and no TF32, so CUDA can be compared with the CPU and with itself."""
    settings = (torch.backends.cudnn, "deterministic", True), (torch.backends.cudnn, "benchmark", False), \
        (torch.backends.cudnn, "allow_tf32", False), (torch.backends.cuda.matmul, "allow_tf32", False)  # fmt: skip
    saved = [getattr(owner, name) for owner, name, _ in settings]
    for owner, name, value in settings:
        setattr(owner, name, value)
    yield
    for (owner, name, _), value in zip(settings, saved, strict=True):
        setattr(owner, name, value)


def random_batch(n: int, seed: int, dtype: torch.dtype) -> tuple[list[torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(n, len(g.bands), g.size, g.size, generator=generator, dtype=dtype) for g in BAND_GROUPS]
    return inputs, (torch.rand(n, 19, generator=generator) < 0.2).to(dtype)


def test_training_steps_on_cuda_agree_with_the_cpu_in_float64(accelerator, exact):
    torch.manual_seed(0)
    reference = KBranchCNN(8).double()
    loss = build_loss("cel")
    trained = []
    for device in (torch.device("cpu"), accelerator):
        model = KBranchCNN(8).double()
        model.load_state_dict(reference.state_dict())
        for module in model.modules():  # dropout masks come from each device's own generator
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        model.to(device).train()
        optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
        for step in range(3):
            inputs, targets = random_batch(4, step, torch.float64)
            value = loss(model(*(x.to(device) for x in inputs)), targets.to(device))
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        trained.append({name: p.detach().cpu() for name, p in model.state_dict().items()})
    for name, value in trained[0].items():
        torch.testing.assert_close(trained[1][name], value, rtol=1e-6, atol=1e-6, msg=name)


def test_resuming_from_a_checkpoint_on_cuda_is_exact(accelerator, exact, encoded, tmp_path, monkeypatch):
    counts = encoded / "class_counts.csv"
    run = config(device=str(accelerator))
    reference = train(run, encoded, counts, tmp_path / "straight")
    train_until_crash(run, 3, encoded, counts, tmp_path / "resumed", monkeypatch)
    resumed = train(run, encoded, counts, tmp_path / "resumed")
    pd.testing.assert_frame_equal(deterministic(resumed), deterministic(reference), check_exact=True)
    first = torch.load(tmp_path / "straight" / "model.pt", weights_only=False)["state_dict"]
    second = torch.load(tmp_path / "resumed" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_bf16_autocast_trains_and_stays_finite(accelerator, encoded, tmp_path):
    """bf16 autocast follows the float32 run within a few per cent, and every number stays finite."""
    counts = encoded / "class_counts.csv"
    fp32 = train(config(device=str(accelerator)), encoded, counts, tmp_path / "fp32")
    bf16 = train(config(device=str(accelerator), amp=True), encoded, counts, tmp_path / "bf16")
    assert np.isfinite(deterministic(bf16).to_numpy(dtype=float)).all()
    for column in ("train_loss", "val_loss"):
        np.testing.assert_allclose(bf16[column], fp32[column], rtol=0.05)


def test_device_resident_data_give_the_pinned_loaders_history(accelerator, exact, encoded, tmp_path):
    counts = encoded / "class_counts.csv"
    run = config(epochs=2, device=str(accelerator))
    loaded = train(run, encoded, counts, tmp_path / "loader")
    resident = train(config(epochs=2, device=str(accelerator), data_on_device=True), encoded, counts,
                     tmp_path / "resident")  # fmt: skip
    pd.testing.assert_frame_equal(deterministic(resident), deterministic(loaded), rtol=1e-6)


def test_lrp_relevance_on_cuda_equals_the_cpus(accelerator, exact):
    pytest.importorskip("zennit", reason="LRP needs zennit: bring it as a wheel (benchmarks/README.md)")
    from benloss.explanation.explain import relevance

    statistics = official_band_statistics()
    torch.manual_seed(0)
    model = KBranchCNN(8).eval()
    inputs, _ = random_batch(4, 0, torch.float32)
    classes = torch.tensor([0, 5, 11, 18])
    cpu_parts, cpu_scores = relevance(model, tuple(inputs), classes, statistics)
    model.to(accelerator)
    parts, scores = relevance(model, tuple(x.to(accelerator) for x in inputs), classes.to(accelerator), statistics)
    torch.testing.assert_close(scores.cpu(), cpu_scores, rtol=1e-4, atol=1e-4)
    for part, cpu_part in zip(parts, cpu_parts, strict=True):
        scale = float(cpu_part.abs().max())
        torch.testing.assert_close(part.cpu(), cpu_part, rtol=1e-4, atol=1e-4 * scale)
