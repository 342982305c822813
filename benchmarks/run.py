"""Speed of the data path and of training, against what users would otherwise run.

    python benchmarks/run.py                 # default sizes, prints a table, writes benchmarks/out/results.csv
    python benchmarks/run.py --quick         # tiny sizes (the smoke test)
    python benchmarks/run.py --end-to-end    # also times the whole demo study with --cores 2

Measures: (1) encoding a BigEarthNet-format .tar.gz into the encoded arrays (one sequential stream), split
into its parts, against reading the extracted patches one by one with rasterio; (2) random training batches
per second from the encoded arrays, against per-item GeoTIFF reading with rasterio (as torchgeo's BigEarthNet
dataset does) and an LMDB store of safetensors records (as the reBEN tooling does), same patches, batch size
and workers; (3) forward+backward images per second at widths 128 and 1024, with the exact FLOP count per image.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from benloss.architectures import DEFAULT_ARCHITECTURE
from benloss.architectures.build import build_model
from benloss.data.archive import decode_band_with_rasterio, decode_patch, iter_patches
from benloss.data.encode import encode_archive
from benloss.data.encoded import read_patch_names
from benloss.data.labels import run_labels
from benloss.data.synth import SynthConfig, make_demo_archive
from benloss.facts.bands import BAND_GROUPS
from benloss.facts.splits import list_paths
from benloss.training.batches import DeviceResidentSplit, EncodedSplit, batch_plan
from benloss.training.models import KBranchCNN

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = 269_695
VAL_IMAGES = 123_723
TEST_IMAGES = 125_866


def timed(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def bench_encoding(work: Path, archive: Path, n_patches: int) -> list[dict]:
    out = work / "encoded"
    seconds = timed(encode_archive, archive, work / "labels" / "patches.parquet",
                    work / "archive" / "band_statistics.csv", out)  # fmt: skip
    rows = [{"benchmark": "encode", "method": "tar.gz -> encoded arrays (one stream, 1 core)",
             "value": n_patches / seconds, "unit": "patches/s"}]  # fmt: skip
    patches = list(iter_patches(archive))  # kept for the decoding rows; the timed pass below finds the cache warm
    stream_seconds = timed(lambda: list(iter_patches(archive)))
    rows.append({"benchmark": "encode", "method": "of which: decompress and untar only",
                 "value": len(patches) / stream_seconds, "unit": "patches/s"})  # fmt: skip
    direct = timed(lambda: [decode_patch(patch) for patch in patches])
    with_gdal = timed(lambda: [[decode_band_with_rasterio(p.bands[b], p.name, b) for b in p.bands] for p in patches])
    rows.append({"benchmark": "encode", "method": "of which: decode 12 bands, direct reader",
                 "value": len(patches) / direct, "unit": "patches/s"})  # fmt: skip
    rows.append({"benchmark": "encode", "method": "decode 12 bands with rasterio instead",
                 "value": len(patches) / with_gdal, "unit": "patches/s"})  # fmt: skip
    extracted = work / "extracted"
    extract_seconds = timed(extract, archive, extracted)
    names = [p.name for p in (extracted / "BigEarthNet-v1.0").iterdir()]
    read_seconds = timed(lambda: [read_patch_rasterio(extracted / "BigEarthNet-v1.0", name) for name in names])
    rows.append({"benchmark": "encode", "method": "extract, then rasterio patch by patch (1 core)",
                 "value": len(names) / (extract_seconds + read_seconds), "unit": "patches/s"})  # fmt: skip
    return rows


def extract(archive: Path, folder: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")


def count_lines(path: Path) -> int:
    with open(path) as handle:
        return sum(1 for _ in handle)


def read_patch_rasterio(root: Path, name: str) -> list[np.ndarray]:
    """One patch the way per-file loaders read it: 12 GeoTIFF opens, one array per resolution group."""
    import rasterio

    groups = []
    for group in BAND_GROUPS:
        bands = []
        for band in group.bands:
            with rasterio.open(root / name / f"{name}_{band}.tif") as dataset:
                bands.append(dataset.read(1))
        groups.append(np.stack(bands))
    return groups


def build_lmdb(encoded: Path, path: Path) -> list[bytes]:
    """An LMDB store with one safetensors record per patch (the reBEN layout)."""
    import lmdb
    from safetensors.numpy import save

    split = EncodedSplit(encoded, "train")
    keys = [name.encode() for name in read_patch_names(encoded, "train")]
    environment = lmdb.open(str(path), map_size=2**32, subdir=True, lock=False)
    with environment.begin(write=True) as transaction:
        for row, key in enumerate(keys):
            record = {g.name: np.ascontiguousarray(split.arrays[g.name][row]) for g in BAND_GROUPS}
            transaction.put(key, save(record))
    environment.close()
    return keys


def bench_loading(work: Path, encoded: Path, batch_size: int, batches: int, device: str) -> list[dict]:
    import lmdb
    from safetensors.numpy import load

    split = EncodedSplit(encoded, "train")
    plan = (batch_plan(split.n_images, batch_size, True, seed=0, epoch=1) * batches)[:batches]
    names = read_patch_names(encoded, "train")
    rows = []

    def encoded_batches():
        for indices in plan:
            batch = split.gather(indices)
            [batch[g.name].float() for g in BAND_GROUPS]

    def rasterio_batches():
        for indices in plan:
            items = [read_patch_rasterio(work / "extracted" / "BigEarthNet-v1.0", names[i]) for i in indices]
            [torch.from_numpy(np.stack([item[k] for item in items])).float() for k in range(len(BAND_GROUPS))]

    keys = build_lmdb(encoded, work / "lmdb")
    environment = lmdb.open(str(work / "lmdb"), readonly=True, lock=False, readahead=False)

    def lmdb_batches():
        with environment.begin() as transaction:
            for indices in plan:
                records = [load(transaction.get(keys[i])) for i in indices]
                [torch.from_numpy(np.stack([r[g.name] for r in records])).float() for g in BAND_GROUPS]

    resident = DeviceResidentSplit(split, torch.device(device))

    def resident_batches():
        for batch in resident.batches(plan):
            [batch[g.name].float() for g in BAND_GROUPS]
        synchronize(device)

    for method, function in (("encoded arrays, one gather per batch", encoded_batches),
                             ("rasterio, 12 GeoTIFFs per item", rasterio_batches),
                             ("LMDB + safetensors, one record per item", lmdb_batches),
                             (f"encoded arrays resident on {device} (training.data_on_device)",
                              resident_batches)):  # fmt: skip
        function()  # warm the page cache, as in a real epoch after the first
        seconds = timed(function)
        rows.append({"benchmark": "load", "method": method, "value": batches * batch_size / seconds,
                     "unit": "images/s"})  # fmt: skip
    environment.close()
    return rows


def flops_per_image(width: int) -> float:
    """Exact forward+backward FLOPs of one image (torch's FLOP counter, batch of 2 divided by 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = KBranchCNN(width).train()
    inputs = [torch.randn(2, len(g.bands), g.size, g.size) for g in BAND_GROUPS]
    counter = FlopCounterMode(display=False)
    with counter:
        model(*inputs).sum().backward()
    return counter.get_total_flops() / 2


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_step(model, optimizer, inputs, targets, device: str, amp: bool) -> None:
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(*inputs).float(), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


#: A training variant is a precision, then optional layout and compiler options, joined by "+".
PRECISIONS, OPTIONS = ("fp32", "bf16"), ("channels-last", "compile")


def check_variant(variant: str) -> None:
    precision, *options = variant.split("+")
    if precision not in PRECISIONS or not set(options) <= set(OPTIONS):
        raise ValueError(f"unknown variant {variant!r}: {'|'.join(PRECISIONS)}, then any of +{', +'.join(OPTIONS)}")


def variant_model(
    width: int, device: str, variant: str, architecture: str = DEFAULT_ARCHITECTURE
) -> tuple[torch.nn.Module, torch.nn.Module, torch.memory_format]:
    """A model (the K-Branch CNN by default) set up as ``variant`` says: the model, what to call (compiled or not)
    and the input layout."""
    options = set(variant.split("+"))
    layout = torch.channels_last if "channels-last" in options else torch.contiguous_format
    model = build_model(architecture, width, 19).to(device, memory_format=layout)
    return model, torch.compile(model) if "compile" in options else model, layout


def random_inputs(batch_size: int, device: str, layout: torch.memory_format) -> list[torch.Tensor]:
    return [torch.randn(batch_size, len(g.bands), g.size, g.size, device=device).contiguous(memory_format=layout)
            for g in BAND_GROUPS]  # fmt: skip


def training_step(width: int, batch_size: int, device: str, variant: str, architecture: str = DEFAULT_ARCHITECTURE):
    """One forward + backward + RMSprop step of ``variant`` on fixed random inputs on the device, warmed up."""
    model, forward, layout = variant_model(width, device, variant, architecture)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4)
    inputs = random_inputs(batch_size, device, layout)
    targets = (torch.rand(batch_size, 19, device=device) < 0.2).float()
    step = partial(train_step, forward, optimizer, inputs, targets, device, "bf16" in variant.split("+"))
    step()  # warm-up (and compilation)
    step()
    synchronize(device)
    return step


def bench_training(widths: list[int], batch_size: int, steps: int, device: str, variants: list[str]) -> list[dict]:
    rows = []
    for width in widths:
        flops = flops_per_image(width)
        for variant in variants:
            step = training_step(width, batch_size, device, variant)
            seconds = timed(lambda: [step() for _ in range(steps)])  # noqa: B023
            synchronize(device)
            rate = steps * batch_size / seconds
            label = f"width {width}, batch {batch_size}, {device}, {variant}"
            rows.append({"benchmark": "train", "method": label, "value": rate, "unit": "images/s"})
            rows.append({"benchmark": "train", "method": f"{label}: implied epoch on the real splits",
                         "value": (TRAIN_IMAGES + VAL_IMAGES / 3) / rate, "unit": "s"})  # fmt: skip
            rows.append({"benchmark": "train", "method": f"{label}: achieved", "value": rate * flops / 1e9,
                         "unit": "GFLOP/s"})  # fmt: skip
        rows.append({"benchmark": "train", "method": f"width {width}: FLOP per image (fwd+bwd)", "value": flops,
                     "unit": "FLOP"})  # fmt: skip
    return rows


def bench_end_to_end(work: Path) -> list[dict]:
    run = f"bench{os.getpid()}"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--config", f"run={run}", "--quiet"],
                   cwd=ROOT, check=True)  # fmt: skip
    seconds = time.perf_counter() - start
    shutil.rmtree(ROOT / "results" / run, ignore_errors=True)
    return [{"benchmark": "end-to-end", "method": "demo study, --cores 2", "value": seconds, "unit": "s"}]


def ratios(rows: list[dict], width: int) -> list[dict]:
    """Our routes against the alternatives, and the loader against the fastest training variant at ``width``."""
    load = {row["method"]: row["value"] for row in rows if row["benchmark"] == "load"}
    encode = {row["method"]: row["value"] for row in rows if row["benchmark"] == "encode"}
    ours = load["encoded arrays, one gather per batch"]
    result = [
        {"benchmark": "ratio", "method": f"encoded arrays / {method}", "value": ours / value, "unit": "x"}
        for method, value in load.items()
        if not method.startswith("encoded")
    ]
    decoding = encode["of which: decode 12 bands, direct reader"] / encode["decode 12 bands with rasterio instead"]
    result.append({"benchmark": "ratio", "method": "band decoding: direct reader / rasterio", "value": decoding,
                   "unit": "x"})  # fmt: skip
    training = [row for row in rows if row["benchmark"] == "train" and row["unit"] == "images/s"
                and row["method"].startswith(f"width {width},")]  # fmt: skip
    if training:
        fastest = max(training, key=lambda row: row["value"])
        for method, value in load.items():
            if method.startswith("encoded"):
                result.append({"benchmark": "ratio", "method": f"loader ({method}) / training ({fastest['method']})",
                               "value": value / fastest["value"], "unit": "x"})  # fmt: skip
    return result


def bench_data(args: argparse.Namespace, patches: int) -> list[dict]:
    """Encoding and loading rows (and the demo study's wall time if asked) on a fresh demo archive."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_demo_archive(work / "archive", SynthConfig(patches=patches, seed=0))
        archive = work / "archive" / "BigEarthNet-demo.tar.gz"
        run_labels(archive, list_paths(work / "archive" / "lists"), work / "labels")
        n_kept = sum(count_lines(work / "archive" / "lists" / f"{split}.csv") for split in ("train", "val", "test"))
        rows = bench_encoding(work, archive, n_kept)
        rows += bench_loading(work, work / "encoded", batch_size=8 if args.quick else 64,
                              batches=2 if args.quick else 40, device=args.device)  # fmt: skip
        if args.end_to_end:
            rows += bench_end_to_end(work)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument("--patches", type=int, default=300)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variants", default="fp32", help="comma-separated training variants, e.g. "
                        "fp32,bf16,bf16+channels-last,bf16+channels-last+compile")  # fmt: skip
    parser.add_argument("--end-to-end", action="store_true", help="also time the demo study")
    parser.add_argument("--training-only", action="store_true",
                        help="training rows only (needs torch, not rasterio, lmdb or safetensors)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "results.csv")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    for variant in variants:
        try:
            check_variant(variant)
        except ValueError as error:
            parser.error(str(error))
    patches = 40 if args.quick else args.patches
    widths, batch, steps = ([16], 8, 1) if args.quick else ([128, 1024], 256, 2)
    torch.set_num_threads(os.cpu_count() or 1)
    rows = [] if args.training_only else bench_data(args, patches)
    rows += bench_training(widths, batch, steps, args.device, variants)
    if not args.training_only:
        rows += ratios(rows, max(widths))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["benchmark", "method", "value", "unit"])
        writer.writeheader()
        writer.writerows(rows)
    width = max(len(row["method"]) for row in rows)
    print(f"{'benchmark':<11} {'method':<{width}} {'value':>14} unit")
    for row in rows:
        print(f"{row['benchmark']:<11} {row['method']:<{width}} {row['value']:>14.4g} {row['unit']}")
    return rows


if __name__ == "__main__":
    main()
