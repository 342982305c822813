"""Memory at scale: the page-cache warning (MemAvailable, cgroup limits) and device-resident data."""

from __future__ import annotations

import os

import numpy as np
import torch

from benloss.data.encode import write_random_encoded
from benloss.training.batches import copy_in_chunks
from benloss.training.config import TrainConfig
from benloss.training.memory import (
    anonymous_bytes,
    cgroup_limit,
    meminfo_available,
    page_cache_budget,
    warn_if_uncached,
)
from benloss.training.train import Trainer

GIB = 2**30


def test_meminfo_available_is_read_in_bytes(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   17000000 kB\n")
    assert meminfo_available(meminfo) == 17_000_000 * 1024
    assert meminfo_available(tmp_path / "missing") is None


def test_cgroup_v2_limit_and_no_limit(tmp_path):
    (tmp_path / "job" / "step").mkdir(parents=True)
    (tmp_path / "cgroup").write_text("0::/job/step\n")
    (tmp_path / "job" / "step" / "memory.max").write_text("68719476736\n")
    assert cgroup_limit(tmp_path / "cgroup", tmp_path) == 64 * GIB
    (tmp_path / "job" / "step" / "memory.max").write_text("max\n")
    assert cgroup_limit(tmp_path / "cgroup", tmp_path) is None


def test_cgroup_v1_limit_and_no_limit(tmp_path):
    (tmp_path / "memory" / "slurm").mkdir(parents=True)
    (tmp_path / "cgroup").write_text("5:devices:/\n4:memory:/slurm\n0::/\n")
    limit = tmp_path / "memory" / "slurm" / "memory.limit_in_bytes"
    limit.write_text("9223372036854771712\n")  # v1's "unlimited"
    assert cgroup_limit(tmp_path / "cgroup", tmp_path) is None
    limit.write_text(f"{8 * GIB}\n")
    assert cgroup_limit(tmp_path / "cgroup", tmp_path) == 8 * GIB


def test_budget_on_this_machine_is_at_most_its_memory():
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    budget = page_cache_budget()
    assert budget is not None and 0 < budget <= total


def test_warning_only_when_the_splits_exceed_the_budget(caplog):
    # The real archive: 269,695 training and 123,723 validation patches of 160,019 bytes (bands and labels).
    splits = {"train": 269_695 * 160_019, "val": 123_723 * 160_019}
    assert warn_if_uncached(splits, budget=48 * GIB)
    assert "train 40.2 GiB, val 18.4 GiB" in caplog.text and "reads 58.6 GiB from disk again" in caplog.text
    caplog.clear()
    assert not warn_if_uncached(splits, budget=60 * GIB)
    assert caplog.text == ""


def test_arrays_reach_the_device_whole_in_chunks(tmp_path):
    array = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.uint16, shape=(10, 2, 3, 3))
    array[:] = np.arange(array.size, dtype=np.uint16).reshape(array.shape)
    copied = copy_in_chunks(array, torch.device("cpu"), rows=3)
    assert copied.dtype == torch.uint16 and torch.equal(copied, torch.from_numpy(np.asarray(array)))


def test_device_out_of_memory_falls_back_to_host_batches(tmp_path, monkeypatch, caplog):
    encoded = write_random_encoded(tmp_path / "encoded", {"train": 16, "val": 8, "test": 8})

    def out_of_memory(split, device):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr("benloss.training.train.DeviceResidentSplit", out_of_memory)
    run = TrainConfig(loss="cel", width=8, epochs=1, batch_size=8, data_on_device=True)
    trainer = Trainer(run, encoded, encoded / "class_counts.csv", tmp_path / "model")
    assert trainer.resident is None
    assert "ran out of memory holding the encoded splits" in caplog.text
    assert trainer.train_epoch(1)[2] == 16


def test_own_memory_is_read_from_status(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nRssAnon:\t  204800 kB\nRssFile:\t 1024 kB\n")
    assert anonymous_bytes(status) == 200 * 2**20
    assert 0 < anonymous_bytes() < os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
