"""One GPU job per card slot on a workstation: OS file locks pick the card before CUDA starts.

Snakemake gives local jobs no devices, so every job would take card 0. A GPU job without a scheduler-assigned
device (``CUDA_VISIBLE_DEVICES`` unset) claims one of ``jobs_per_gpu`` slots on each card: an exclusive
``flock`` on ``<lock_dir>/gpu<card>.slot<slot>.lock``. The kernel drops the lock when the process ends, however it
ends (``kill -9`` included), so a dead job never holds a card. Slots are tried slot 0 on every card first, so no
card runs two jobs while another idles. The claim then pins the card with ``CUDA_VISIBLE_DEVICES``; under SLURM
(or whenever the variable is set) nothing is claimed and the variable is used as given.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

#: Tests (and machines without NVML) set the number of cards here; the one seam for the device count.
FAKE_GPUS_ENV = "BENLOSS_FAKE_GPUS"
#: Shared by every benloss run of every user on the machine unless ``training.gpu_lock_dir`` says otherwise.
DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / "benloss-gpu-locks"
WAIT_LOG_SECONDS = 60.0


@dataclass
class GpuSlot:
    """A claimed slot: the card, the slot on it, and the open lock file that holds it."""

    card: int
    slot: int
    handle: IO[bytes]

    def release(self) -> None:
        self.handle.close()


def visible_gpu_count() -> int:
    """Cards this process could use: ``BENLOSS_FAKE_GPUS`` if set, else NVML's count (0 without a driver).

    NVML counts devices without creating a CUDA context, so ``CUDA_VISIBLE_DEVICES`` can still be set afterwards.
    """
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake is not None:
        return int(fake)
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return 0
    count = ctypes.c_uint(0)
    if nvml.nvmlInit_v2() != 0:
        return 0
    try:
        return count.value if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0 else 0
    finally:
        nvml.nvmlShutdown()


def slot_order(cards: int, jobs_per_gpu: int) -> list[tuple[int, int]]:
    """(card, slot) pairs in claiming order: every card's first slot before any card's second."""
    return [(card, slot) for slot in range(jobs_per_gpu) for card in range(cards)]


def _open_lock_dir(lock_dir: Path) -> None:
    lock_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # shared by all users of the machine: mode 1777, like /tmp
        os.chmod(lock_dir, 0o1777)


def try_claim(lock_dir: Path, cards: int, jobs_per_gpu: int) -> GpuSlot | None:
    """The first free slot, locked, or ``None`` when all are taken."""
    for card, slot in slot_order(cards, jobs_per_gpu):
        path = lock_dir / f"gpu{card}.slot{slot}.lock"
        # Read-only is enough for flock, and lets any user lock a file another user created.
        handle = os.fdopen(os.open(path, os.O_RDONLY | os.O_CREAT, 0o666), "rb")
        with contextlib.suppress(PermissionError):
            os.fchmod(handle.fileno(), 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.close()
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                continue
            raise
        return GpuSlot(card, slot, handle)
    return None


def wait_for_slot(lock_dir: Path, cards: int, jobs_per_gpu: int, poll_seconds: float = 1.0) -> GpuSlot:
    """Claim a slot, waiting (with a log line now and every minute) while all ``cards × jobs_per_gpu`` are taken."""
    _open_lock_dir(lock_dir)
    started = time.monotonic()
    last_log = None
    while (claimed := try_claim(lock_dir, cards, jobs_per_gpu)) is None:
        now = time.monotonic()
        if last_log is None or now - last_log >= WAIT_LOG_SECONDS:
            log.warning("all %d GPU slots (%d card(s) × %d job(s) per card, locks in %s) are taken; waiting for one "
                        "to free (%.0f s so far)", cards * jobs_per_gpu, cards, jobs_per_gpu, lock_dir,
                        now - started)  # fmt: skip
            last_log = now
        time.sleep(poll_seconds)
    return claimed


def _cuda_started() -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_initialized()


@contextmanager
def gpu_slot(
    device: str, jobs_per_gpu: int = 1, lock_dir: Path | None = None, poll_seconds: float = 1.0
) -> Iterator[GpuSlot | None]:
    """Hold a card slot for the block and pin that card; ``None`` (nothing claimed) where none is needed.

    Nothing is claimed for ``device`` other than ``auto``/``cuda``, where a scheduler has set
    ``CUDA_VISIBLE_DEVICES``, or where no card is visible.
    """
    if device not in ("auto", "cuda"):
        yield None
        return
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        log.info("CUDA_VISIBLE_DEVICES=%s set by the scheduler (or the user): no GPU slot claimed",
                 os.environ["CUDA_VISIBLE_DEVICES"])  # fmt: skip
        yield None
        return
    cards = visible_gpu_count()
    if cards == 0:
        yield None
        return
    if _cuda_started():
        raise RuntimeError("CUDA was initialised before a GPU slot was claimed: the card can no longer be pinned")
    lock_dir = Path(lock_dir) if lock_dir else DEFAULT_LOCK_DIR
    claimed = wait_for_slot(lock_dir, cards, jobs_per_gpu, poll_seconds)
    # Same numbering as nvidia-smi and NVML (CUDA's default order puts the fastest card first).
    saved = {name: os.environ.get(name) for name in ("CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES")}
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    os.environ["CUDA_VISIBLE_DEVICES"] = str(claimed.card)
    log.info("GPU slot claimed: card %d, slot %d of %d (lock %s)", claimed.card, claimed.slot, jobs_per_gpu,
             lock_dir / f"gpu{claimed.card}.slot{claimed.slot}.lock")  # fmt: skip
    try:
        yield claimed
    finally:
        claimed.release()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
