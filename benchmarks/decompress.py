"""Which decoder should stream a BigEarthNet archive: gzip decoders against one another, and zstd.

    python benchmarks/decompress.py ARCHIVE.tar.gz      # e.g. a demo archive: benloss synth --patches 3000
    python benchmarks/decompress.py --quick             # a tiny demo archive (the smoke test)

For each gzip decoder installed (the standard library's, ISA-L's igzip, zlib-ng, rapidgzip on 1 and on all
cores) and for zstandard's streaming reader over the same tar recompressed as ``.tar.zst``: the time to
decompress the whole archive, and to walk it with ``tarfile`` reading every member as ``benloss.data.archive``
does (``benloss.data.tarstream``). ``tarfile.open(mode="r|gz")`` reading every member, the standard library's
own route and how ``benloss`` read archives before, is the baseline. Best of ``--repeat``
runs (page cache warm); CPU seconds beside wall seconds, as this shared machine's wall times vary.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from benloss.data.streams import available_gzip_decoders, open_gzip, open_zstd
from benloss.data.synth import SynthConfig, make_demo_archive
from benloss.data.tarstream import iter_files

CHUNK = 1 << 20


def drain(stream: IO[bytes]) -> int:
    """Read a stream to its end in 1 MiB pieces; its length."""
    total = 0
    while chunk := stream.read(CHUNK):
        total += len(chunk)
    return total


def walk_tar(stream: IO[bytes]) -> int:
    """Read every file of a streamed tar as ``benloss.data.archive`` does (``benloss.data.tarstream``); their number."""
    return sum(1 for _ in iter_files(stream, lambda name: True))


def stdlib_tarfile_walk(path: Path) -> int:
    """The baseline: ``tarfile`` over its own gzip stream, reading every member."""
    count = 0
    with tarfile.open(path, mode="r|gz") as tar:
        for member in tar:
            tar.members.clear()
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                handle.read()
                count += 1
    return count


def openers(archive: Path, zstd_archive: Path) -> dict[str, Callable[[], IO[bytes]]]:
    """Every route to the archive's decompressed bytes available here, by name."""
    routes: dict[str, Callable[[], IO[bytes]]] = {
        f"gzip: {name}": (lambda name=name: open_gzip(archive, name)) for name in available_gzip_decoders()
    }
    if importlib.util.find_spec("zlib_ng") is not None:
        from zlib_ng import gzip_ng

        routes["gzip: zlib-ng"] = lambda: gzip_ng.open(archive, "rb")
    if importlib.util.find_spec("rapidgzip") is not None:
        import rapidgzip

        for threads in sorted({1, os.cpu_count() or 1}):
            routes[f"gzip: rapidgzip, {threads} thread(s)"] = lambda threads=threads: rapidgzip.open(
                str(archive), parallelization=threads
            )
    routes["zstd: zstandard stream reader"] = lambda: open_zstd(zstd_archive)
    return routes


def best_of(repeat: int, function: Callable[[], int]) -> tuple[float, float, int]:
    """Lowest wall and CPU seconds of ``repeat`` calls, and the call's result."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), result


def recompress_zstd(archive: Path, target: Path, level: int = 3) -> None:
    import zstandard

    with open_gzip(archive) as source, open(target, "wb") as sink:
        zstandard.ZstdCompressor(level=level, threads=-1).copy_stream(source, sink)


def measure(archive: Path, repeat: int, work: Path) -> list[dict]:
    zstd_archive = work / (archive.name.removesuffix(".tar.gz") + ".tar.zst")
    recompress_zstd(archive, zstd_archive)
    rows = []
    wall, cpu, members = best_of(repeat, lambda: stdlib_tarfile_walk(archive))
    rows.append({"route": "baseline: tarfile r|gz", "what": "walk tar", "wall_s": wall, "cpu_s": cpu, "n": members})
    for name, opener in openers(archive, zstd_archive).items():
        for what, reader in (("decompress", drain), ("walk tar", walk_tar)):

            def run(opener=opener, reader=reader) -> int:
                with contextlib.closing(opener()) as stream:
                    return reader(stream)

            wall, cpu, n = best_of(repeat, run)
            rows.append({"route": name, "what": what, "wall_s": wall, "cpu_s": cpu, "n": n})
    sizes = {"gz": archive.stat().st_size, "zst": zstd_archive.stat().st_size}
    print(f"archive {archive}: {sizes['gz'] / 1e6:.0f} MB gzip, {sizes['zst'] / 1e6:.0f} MB as zstd level 3")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", type=Path, nargs="?", help="a BigEarthNet-format .tar.gz (default: make one)")
    parser.add_argument("--quick", action="store_true", help="a tiny demo archive, one run: the smoke test")
    parser.add_argument("--repeat", type=int, default=3, help="runs per route; the best is reported")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        archive = args.archive
        if archive is None:
            make_demo_archive(work / "demo", SynthConfig(patches=6 if args.quick else 300, seed=0))
            archive = work / "demo" / "BigEarthNet-demo.tar.gz"
        rows = measure(archive, 1 if args.quick else args.repeat, work)
    wall, cpu = rows[0]["wall_s"], rows[0]["cpu_s"]
    print(f"{'route':40s} {'what':10s} {'wall s':>8s} {'cpu s':>8s} {'baseline/wall':>13s} {'baseline/cpu':>12s}")
    for row in rows:
        print(f"{row['route']:40s} {row['what']:10s} {row['wall_s']:8.2f} {row['cpu_s']:8.2f} "
              f"{wall / row['wall_s']:12.2f}x {cpu / max(row['cpu_s'], 1e-6):11.2f}x")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
