"""Host memory of one training job: the peak proportional resident memory (PSS) of its process tree, its own
(anonymous) memory apart from the memory-mapped split pages it touches (file-backed), optionally under a cgroup
memory limit (the page cache then counts against the limit, as under SLURM). Random encoded splits, on the CPU.

    python benchmarks/memory.py --train 2048 --val 512 --width 1024 --batch 256 --workers 4
    python benchmarks/memory.py --loader-only --train 4096 --val 1024 --limit-mb 500   # as root, memory cgroup
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from benloss.data.encode import write_random_encoded

ROOT = Path(__file__).resolve().parents[1]
#: --loader-only: two epochs of the training loader over both splits, no model (minutes of CPU become seconds).
LOADER_EPOCHS = """
import logging, sys
from benloss.training.batches import EncodedSplit, batch_plan, loader, split_bytes
from benloss.training.memory import warn_if_uncached
logging.basicConfig(level=logging.INFO)
encoded, batch, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
splits = [EncodedSplit(encoded, name) for name in ("train", "val")]
warn_if_uncached({split.split: split_bytes(split) for split in splits})
for epoch in (1, 2):
    for split in splits:
        for _ in loader(split, batch_plan(split.n_images, batch, True, 0, epoch), workers, False):
            pass
"""
CGROUP_V1, CGROUP_V2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")


def pss_kib(pid: int, fields: tuple[str, ...] = ("Pss_Anon", "Pss_File", "Pss_Shmem")) -> dict[str, int]:
    """Proportional set sizes of one process: shared pages (the workers' copy-on-write memory, a memory map
    several processes read) count once across the tree."""
    values = dict.fromkeys(fields, 0)
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            key = line.split(":")[0]
            if key in values:
                values[key] = int(line.split()[1])
    return values


def evict(folder: Path) -> None:
    """Drop the folder's files from the page cache, so the job's reads fault them in and its cgroup pays for them
    (pages stay charged to the cgroup that first cached them, here the writer's)."""
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def make_cgroup(limit_mb: int) -> tuple[Path, Path]:
    """A fresh memory cgroup with the limit; returns its folder and the file that adds a process to it."""
    name = f"benloss-memory-{os.getpid()}"
    if CGROUP_V1.is_dir():
        folder = CGROUP_V1 / name
        folder.mkdir()
        (folder / "memory.limit_in_bytes").write_text(str(limit_mb * 2**20))
    else:
        folder = CGROUP_V2 / name
        folder.mkdir()
        (folder / "memory.max").write_text(str(limit_mb * 2**20))
    return folder, folder / "cgroup.procs"


def measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        encoded = write_random_encoded(Path(tmp) / "encoded", {"train": args.train, "val": args.val, "test": 8})
        evict(encoded)
        command = [sys.executable, "-m", "benloss", "train", "--encoded", str(encoded), "--class-counts",
                   str(encoded / "class_counts.csv"), "--out", str(Path(tmp) / "model"), "--loss", "cel",
                   "--model", json.dumps({"width": args.width}),
                   "--training", json.dumps({"epochs": 1, "batch_size": args.batch, "workers": args.workers,
                                             "threads": args.threads, "device": "cpu"})]  # fmt: skip
        if args.loader_only:
            command = [sys.executable, "-c", LOADER_EPOCHS, str(encoded), str(args.batch), str(args.workers)]
        cgroup, procs = make_cgroup(args.limit_mb) if args.limit_mb else (None, None)
        env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
        started = time.perf_counter()
        job = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True,
                               preexec_fn=(lambda: procs.write_text(str(os.getpid()))) if procs else None)  # fmt: skip
        peak = {"anon_mib": 0.0, "file_mib": 0.0, "shmem_mib": 0.0, "main_anon_mib": 0.0, "processes": 0}
        while job.poll() is None:
            try:
                tree = [psutil.Process(job.pid), *psutil.Process(job.pid).children(recursive=True)]
                rows = [pss_kib(p.pid) for p in tree]
            except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
                continue
            peak["anon_mib"] = max(peak["anon_mib"], sum(r["Pss_Anon"] for r in rows) / 1024)
            peak["file_mib"] = max(peak["file_mib"], sum(r["Pss_File"] for r in rows) / 1024)
            peak["shmem_mib"] = max(peak["shmem_mib"], sum(r["Pss_Shmem"] for r in rows) / 1024)
            peak["main_anon_mib"] = max(peak["main_anon_mib"], rows[0]["Pss_Anon"] / 1024)
            peak["processes"] = max(peak["processes"], len(rows))
            time.sleep(0.2)
        stderr = job.stderr.read()
        warned = "exceed the memory this job can keep in the page cache" in stderr
        result = {"returncode": job.returncode, "seconds": time.perf_counter() - started,
                  "splits_mib": (args.train + args.val) * 160_019 / 2**20, "limit_mb": args.limit_mb,
                  "page_cache_warning": warned, **peak}  # fmt: skip
        if cgroup is not None:
            usage = cgroup / "memory.max_usage_in_bytes"
            result["cgroup_peak_mib"] = int(usage.read_text()) / 2**20 if usage.exists() else None
            cgroup.rmdir()
        if job.returncode:
            result["stderr_tail"] = stderr[-1500:]
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=2048, help="training images (160 kB each)")
    parser.add_argument("--val", type=int, default=512, help="validation images")
    parser.add_argument("--width", type=int, default=1024, help="units of the last fully connected layers")
    parser.add_argument("--batch", type=int, default=256, help="batch size")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the training process")
    parser.add_argument("--loader-only", action="store_true", help="two loader epochs instead of training")
    parser.add_argument("--limit-mb", type=int, default=None, help="run inside a new memory cgroup of this limit")
    print(json.dumps(measure(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
