"""Data preparation against archive size: time and peak memory of the one-pass data step (``benloss prepare``).

    python benchmarks/scale.py --patches 3000,30000      # demo archives made (and kept) under --work
    python benchmarks/scale.py --quick                   # tiny sizes: the smoke test

Each step runs as its own process (``python -m benloss ...``, as Snakemake runs it), timed in wall and CPU
seconds, with its peak resident memory from the kernel (``wait4``), beside an interpreter that only imports
the stages (the floor every step pays) and beside ``tarfile`` + gzip just reading the archive once. From the
largest two sizes a line (time = fixed + per patch x patches) projects the full BigEarthNet-S2 archive.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIGEARTHNET_PATCHES = 590_326
LISTS = {"train": "train.csv", "val": "val.csv", "test": "test.csv", "snow": "patches_with_seasonal_snow.csv",
         "cloud": "patches_with_cloud_and_shadow.csv"}  # fmt: skip
READ_ONLY = """
import sys, tarfile
with tarfile.open(sys.argv[1], mode="r|gz") as tar:
    for member in tar:
        tar.members.clear()
        if member.isfile():
            tar.extractfile(member).read()
"""
#: The demo archive in v1.0 layout, as the label and encode stages are told it.
DEMO = ("--dataset", "demo", "--layout", "v1")


def run_measured(command: list[str], log: Path) -> dict:
    """Run ``command`` as a child process: wall seconds, CPU seconds and peak RSS (MB) of that child alone."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}); see {log}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def benloss(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "benloss", *arguments]


def measure_size(patches: int, work: Path) -> list[dict]:
    """Make (or reuse) a demo archive of ``patches`` patches and time each data step on it."""
    folder = work / f"archive-{patches}"
    archive = folder / "BigEarthNet-demo.tar.gz"
    rows = []
    if not archive.exists():
        synth = run_measured(benloss("synth", "--out", str(folder), "--patches", str(patches), "--seed", "3"),
                             work / f"synth-{patches}.log")  # fmt: skip
        rows.append({"step": "synth (demo generator)", **synth})
    lists = [f"--{key}={folder / 'lists' / name}" for key, name in LISTS.items()]
    steps = {
        "interpreter + imports only": [sys.executable, "-c", "import benloss.data.prepare"],
        "tarfile + gzip reading once": [sys.executable, "-c", READ_ONLY, str(archive)],
        "prepare": benloss("prepare", *DEMO, "--archive", str(archive), *lists, "--band-statistics",
                           str(folder / "band_statistics.csv"), "--labels-out", str(work / f"labels-{patches}"),
                           "--out", str(work / f"encoded-{patches}")),
    }  # fmt: skip
    for output in (work / f"labels-{patches}", work / f"encoded-{patches}"):
        shutil.rmtree(output, ignore_errors=True)
    for step, command in steps.items():
        rows.append({"step": step, **run_measured(command, work / f"{step.split()[0]}-{patches}.log")})
    megabytes = archive.stat().st_size / 1e6
    return [{"patches": patches, "archive_mb": round(megabytes), **row} for row in rows]


def project(rows: list[dict], step: str, key: str) -> float:
    """``key`` of ``step`` projected to the full archive along the line through the two largest sizes."""
    points = sorted((row["patches"], row[key]) for row in rows if row["step"] == step)[-2:]
    (n1, t1), (n2, t2) = points
    slope = (t2 - t1) / (n2 - n1)
    return t2 + slope * (BIGEARTHNET_PATCHES - n2)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", default="3000,30000", help="comma-separated archive sizes, in patches")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "scale",
                        help="where archives and outputs stay (archives are reused)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="sizes 8 and 16, for the smoke test")
    parser.add_argument("--out", type=Path, default=None, help="CSV of the rows (default: WORK/scale.csv)")
    args = parser.parse_args(argv)
    sizes = [8, 16] if args.quick else [int(n) for n in args.patches.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [row for patches in sizes for row in measure_size(patches, args.work)]
    out = args.out or args.work / "scale.csv"
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{'patches':>8s} {'step':30s} {'wall s':>8s} {'cpu s':>8s} {'peak RSS MB':>12s}")
    for row in rows:
        print(f"{row['patches']:8d} {row['step']:30s} {row['wall_s']:8.1f} {row['cpu_s']:8.1f} "
              f"{row['peak_rss_mb']:12.0f}")  # fmt: skip
    if len(sizes) >= 2:
        for step in ("tarfile + gzip reading once", "prepare"):
            print(f"projected for {BIGEARTHNET_PATCHES:,} patches, {step}: {project(rows, step, 'wall_s') / 60:.0f} "
                  f"minutes wall, {project(rows, step, 'cpu_s') / 60:.0f} CPU minutes")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
