"""GPU slot claiming without a GPU: cards faked with BENLOSS_FAKE_GPUS, jobs are real processes holding real locks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benloss.cli import main
from benloss.gpu import FAKE_GPUS_ENV, gpu_slot, slot_order, try_claim

from .support import ROOT

#: A job: claim a slot, print "card slot CUDA_VISIBLE_DEVICES", hold it until its release file appears.
JOB = """
import logging, os, sys, time
from pathlib import Path
from benloss.cli import main
from benloss.gpu import gpu_slot
logging.basicConfig(level=logging.INFO)
lock_dir, jobs_per_gpu, release = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
with gpu_slot("auto", jobs_per_gpu, lock_dir, poll_seconds=0.02) as claimed:
    print(claimed.card, claimed.slot, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
    while not release.exists():
        time.sleep(0.01)
"""


def start_job(lock_dir: Path, jobs_per_gpu: int, release: Path, cards: int) -> subprocess.Popen:
    env = os.environ | {FAKE_GPUS_ENV: str(cards), "PYTHONPATH": str(ROOT / "src")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return subprocess.Popen([sys.executable, "-c", JOB, str(lock_dir), str(jobs_per_gpu), str(release)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def claim_of(job: subprocess.Popen) -> tuple[int, int]:
    card, slot, visible = job.stdout.readline().split()
    assert visible == card, "the job must see only its own card"
    return int(card), int(slot)


def test_slots_fill_every_card_before_doubling_up():
    assert slot_order(3, 2) == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]


def test_seven_jobs_on_three_cards_by_two_never_share_and_the_seventh_waits(tmp_path):
    locks = tmp_path / "locks"
    jobs, claims = [], []
    try:
        for i in range(6):  # one after the other, so each claim shows the filling order
            jobs.append(start_job(locks, 2, tmp_path / f"release{i}", cards=3))
            claims.append(claim_of(jobs[-1]))
        assert claims == slot_order(3, 2)
        jobs.append(start_job(locks, 2, tmp_path / "release6", cards=3))
        assert "all 6 GPU slots (3 card(s) × 2 job(s) per card" in jobs[6].stderr.readline()  # it waits
        time.sleep(0.2)
        assert jobs[6].poll() is None
        (tmp_path / "release4").touch()  # the job on card 1, slot 1 ends
        assert jobs[4].wait(timeout=10) == 0
        assert claim_of(jobs[6]) == (1, 1)
        for i in (0, 1, 2, 3, 5, 6):
            (tmp_path / f"release{i}").touch()
        assert all(job.wait(timeout=10) == 0 for job in jobs)
    finally:
        for job in jobs:
            job.kill()


def test_a_killed_holders_slot_is_free_at_once(tmp_path):
    locks = tmp_path / "locks"
    holder = start_job(locks, 1, tmp_path / "never", cards=1)
    try:
        assert claim_of(holder) == (0, 0)
        assert try_claim(locks, 1, 1) is None
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        claimed = try_claim(locks, 1, 1)
        assert claimed is not None and (claimed.card, claimed.slot) == (0, 0)
        claimed.release()
    finally:
        holder.kill()


def test_a_scheduler_assigned_device_is_used_as_given(tmp_path, monkeypatch):
    monkeypatch.setenv(FAKE_GPUS_ENV, "3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    with gpu_slot("auto", 2, tmp_path / "locks") as claimed:
        assert claimed is None
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert not (tmp_path / "locks").exists()


def test_cpu_jobs_and_machines_without_cards_claim_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv(FAKE_GPUS_ENV, "2")
    with gpu_slot("cpu", 1, tmp_path / "locks") as claimed:
        assert claimed is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv(FAKE_GPUS_ENV, "0")
    with gpu_slot("auto", 1, tmp_path / "locks") as claimed:
        assert claimed is None and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_the_pin_is_undone_when_the_block_ends(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv(FAKE_GPUS_ENV, "2")
    with gpu_slot("cuda", 1, tmp_path / "locks") as claimed:
        assert (claimed.card, os.environ["CUDA_VISIBLE_DEVICES"]) == (0, "0")
        assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    again = try_claim(tmp_path / "locks", 2, 1)
    assert (again.card, again.slot) == (0, 0)
    again.release()


def test_the_training_step_runs_on_the_free_card_it_claimed(tmp_path, monkeypatch):
    """`benloss train` with 2 (fake) cards and card 0 busy: training runs pinned to card 1, then frees it."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv(FAKE_GPUS_ENV, "2")
    locks = tmp_path / "locks"
    locks.mkdir()
    busy = try_claim(locks, 2, 1)
    seen = []
    monkeypatch.setattr("benloss.training.train.train", lambda *args: seen.append(os.environ["CUDA_VISIBLE_DEVICES"]))
    main(
        ["train", "--encoded", "e", "--class-counts", "c", "--out", "o", "--loss", "cel", "--gpu-lock-dir", str(locks)]
    )
    busy.release()
    assert seen == ["1"]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    freed = [try_claim(locks, 2, 1) for _ in range(2)]
    assert [(slot.card, slot.slot) for slot in freed] == [(0, 0), (1, 0)]
    for slot in freed:
        slot.release()
