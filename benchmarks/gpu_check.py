"""The whole GPU verification in one command (`make gpu-check`): about 8 minutes on one H100 or H200.

    python benchmarks/gpu_check.py --out benchmarks/out/gpu    # needs CUDA: exits 2 without it
    python benchmarks/gpu_check.py --smoke --out /tmp/check    # every step on the CPU at tiny sizes (`make test`)

(a) the tests marked ``gpu`` (tests/training/test_on_gpu.py); (b) training speed of fp32, bf16, bf16 + channels-last and
bf16 + channels-last + torch.compile at widths 128 and 1024, batch 256, ``cudnn.benchmark`` on; (c) the loader
routes (memory-map gather into pinned memory with non-blocking copies; device-resident) against the fastest
training variant; (d) packing: 1, 2 and 4 training processes on the one card at once, total images/s; (e) the
paper study's cost on this card (7 losses x 80 epochs x (269,695 + 123,723) images, evaluation and LRP) in
GPU-hours, for one job per card and for the best packing; (f) every architecture (``--architectures``, all of the
registry's by default): training and forward images/s in fp32 and bf16 + channels-last at the study's batch, peak
GPU memory, and the GPU-hours of the losses' study with it (one job per card). Without timm, the timm backbones
skip with a message.

It needs torch, numpy, pandas, pytest, tqdm, matplotlib and scipy, not rasterio, pyarrow, snakemake or lmdb;
without zennit the LRP test and timing skip with a message. Writes ``gpu_check.json`` and ``gpu_check.md``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

# benchmarks/run.py: the training step, the variants and the split sizes.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench

from benloss.data.encode import write_random_encoded
from benloss.facts.bands import official_band_statistics
from benloss.facts.loss_catalog import PAPER_LOSS_IDS
from benloss.training.batches import DeviceResidentSplit, EncodedSplit, batch_plan, loader, to_device
from benloss.training.models import BandNormalizer

ROOT = bench.ROOT
VARIANTS = ("fp32", "bf16", "bf16+channels-last", "bf16+channels-last+compile")
#: The paper's study: epochs per loss, and how many LRP examples a model explains (Fig. 1 plus spare rows).
EPOCHS, LRP_BATCH = 80, 32


@dataclass(frozen=True)
class Sizes:
    """How much each step measures."""

    widths: tuple[int, ...]
    batch: int
    variants: tuple[str, ...]
    seconds: float  # timed per training variant, after warm-up
    loader_images: int
    loader_batches: int
    workers: tuple[int, ...]
    packing: tuple[int, ...]
    packing_seconds: float


FULL = Sizes((128, 1024), 256, VARIANTS, 3.0, 8192, 64, (0, 4), (1, 2, 4), 60.0)
#: torch.compile takes minutes on a CPU: the smoke run leaves that variant out.
SMOKE = Sizes((16,), 2, VARIANTS[:3], 0.2, 64, 4, (0, 1), (1, 2), 1.0)


def synchronize(device: str) -> None:
    bench.synchronize(device)


def rate_for(step, batch: int, device: str, seconds: float) -> float:
    """Images per second of ``step`` (warmed up) run for about ``seconds``."""
    chunk = 1 if device == "cpu" else 5  # a CPU step takes long enough to check the clock after each
    steps, start = 0, time.perf_counter()
    while True:
        for _ in range(chunk):
            step()
        steps += chunk
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps * batch / elapsed


# -- (a) ------------------------------------------------------------------------------------------
def gpu_tests(out: Path, smoke: bool) -> dict:
    """Run the tests marked ``gpu``; outcome and message of each from pytest's JUnit report."""
    report = out / "gpu_tests.xml"
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    if smoke:
        env["BENLOSS_GPU_TESTS_ON_CPU"] = "1"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
               f"--junitxml={report}", str(ROOT / "tests" / "training" / "test_on_gpu.py")]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    tests = []
    if report.exists():
        for case in ET.parse(report).iter("testcase"):
            outcome, message = "passed", ""
            for kind in ("failure", "error", "skipped"):
                found = case.find(kind)
                if found is not None:
                    outcome, message = kind, (found.get("message") or "")[:300]
            tests.append({"test": case.get("name"), "outcome": outcome, "message": message})
    return {"returncode": result.returncode, "tests": tests, "output_tail": result.stdout[-2000:]}


# -- (b) ------------------------------------------------------------------------------------------
def forward_step(width: int, batch: int, device: str, variant: str, architecture: str = "kbranch"):
    """Validation's forward pass (no gradients) for ``variant``, warmed up."""
    model, forward, layout = bench.variant_model(width, device, variant, architecture)
    model.eval()
    inputs = bench.random_inputs(batch, device, layout)

    @torch.no_grad()
    def step() -> None:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled="bf16" in variant):
            forward(*inputs)

    step()
    step()
    synchronize(device)
    return step


def training_speed(device: str, sizes: Sizes) -> list[dict]:
    rows = []
    for width in sizes.widths:
        for variant in sizes.variants:
            started = time.perf_counter()
            train = rate_for(bench.training_step(width, sizes.batch, device, variant), sizes.batch, device,
                             sizes.seconds)  # fmt: skip
            forward = rate_for(forward_step(width, sizes.batch, device, variant), sizes.batch, device, sizes.seconds)
            rows.append({"width": width, "variant": variant, "train_images_per_s": train,
                         "forward_images_per_s": forward,
                         "seconds_with_warmup": time.perf_counter() - started})  # fmt: skip
            print(f"  width {width} {variant}: {train:.4g} images/s training, {forward:.4g} forward", flush=True)
    return rows


# -- (f) ------------------------------------------------------------------------------------------
#: The variants each architecture is timed in.
ARCHITECTURE_VARIANTS = ("fp32", "bf16+channels-last")


def peak_memory_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def architecture_speed(device: str, sizes: Sizes, architectures: list[str], width: int) -> list[dict]:
    """Training and forward images/s of every architecture in ARCHITECTURE_VARIANTS, with peak GPU memory and the
    losses' study's GPU-hours with it (7 losses × 80 epochs, validation each epoch, one evaluation)."""
    from benloss.architectures import architecture

    rows = []
    for architecture_id in architectures:
        entry = architecture(architecture_id)
        if entry.timm_name and importlib.util.find_spec("timm") is None:
            print(f"  {architecture_id}: timm is not installed here; skipped", flush=True)
            rows.append({"architecture": architecture_id, "skipped": "timm is not installed"})
            continue
        for variant in ARCHITECTURE_VARIANTS[: 1 if sizes.seconds < 1 else None]:
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            step = bench.training_step(width, sizes.batch, device, variant, architecture_id)
            train = rate_for(step, sizes.batch, device, sizes.seconds)
            memory = peak_memory_gib(device)
            del step
            forward = rate_for(forward_step(width, sizes.batch, device, variant, architecture_id), sizes.batch,
                               device, sizes.seconds)  # fmt: skip
            models = len(PAPER_LOSS_IDS)
            seconds = models * (EPOCHS * (bench.TRAIN_IMAGES / train + bench.VAL_IMAGES / forward)
                                + bench.TEST_IMAGES / forward)  # fmt: skip
            rows.append({"architecture": architecture_id, "name": entry.name, "variant": variant,
                         "train_images_per_s": train, "forward_images_per_s": forward, "peak_memory_gib": memory,
                         "study_gpu_hours": seconds / 3600})  # fmt: skip
            shown = "n/a" if memory is None else f"{memory:.1f} GiB"
            print(f"  {entry.name} {variant}: {train:.4g} images/s training, {forward:.4g} forward, peak {shown}, "
                  f"study {seconds / 3600:.2f} GPU-hours", flush=True)  # fmt: skip
    return rows


def fastest(rows: list[dict], width: int) -> dict:
    return max((row for row in rows if row["width"] == width), key=lambda row: row["train_images_per_s"])


# -- (c) ------------------------------------------------------------------------------------------
def loader_speed(device: str, sizes: Sizes, work: Path, training: list[dict]) -> list[dict]:
    """Normalised batches per second on the device by each route, and the ratio to the fastest training."""
    encoded = write_random_encoded(work / "encoded", {"train": sizes.loader_images, "val": 8, "test": 8})
    split = EncodedSplit(encoded, "train")
    plan = batch_plan(split.n_images, sizes.batch, True, seed=0, epoch=1) * sizes.loader_batches
    plan = plan[: sizes.loader_batches]
    normalizer = BandNormalizer(official_band_statistics()).to(device)
    target = torch.device(device)

    def host(workers: int):
        def run() -> None:
            for batch in loader(split, plan, workers, pin_memory=target.type == "cuda"):
                normalizer(to_device(batch, target))
            synchronize(device)

        return run

    resident = DeviceResidentSplit(split, target)

    def on_device() -> None:
        for batch in resident.batches(plan):
            normalizer(batch)
        synchronize(device)

    routes = {f"memory-map gather, pinned, non-blocking copy, {w} worker(s)": host(w) for w in sizes.workers}
    routes["device-resident (training.data_on_device)"] = on_device
    rows = []
    for route, function in routes.items():
        function()  # warm: page cache, workers' first start
        rate = len(plan) * sizes.batch / bench.timed(function)
        row = {"route": route, "images_per_s": rate}
        for width in sizes.widths:
            row[f"x_fastest_training_width_{width}"] = rate / fastest(training, width)["train_images_per_s"]
        rows.append(row)
        print(f"  {route}: {rate:.4g} images/s", flush=True)
    return rows


# -- (d) ------------------------------------------------------------------------------------------
def pack_worker(args: argparse.Namespace) -> None:
    """One of the packed training processes: warm up, say ready, wait for go, train for --seconds."""
    torch.backends.cudnn.benchmark = True
    step = bench.training_step(args.width, args.batch, args.device, args.variant)
    print("ready", flush=True)
    sys.stdin.readline()
    rate = rate_for(step, args.batch, args.device, args.seconds)
    print(json.dumps({"images_per_s": rate}), flush=True)


def packing(device: str, sizes: Sizes, width: int, variant: str) -> list[dict]:
    """Total training images/s of 1, 2, 4 processes sharing the card, all timed over the same window."""
    rows = []
    for count in sizes.packing:
        command = [sys.executable, __file__, "--pack-worker", "--device", device, "--width", str(width), "--batch",
                   str(sizes.batch), "--variant", variant, "--seconds", str(sizes.packing_seconds)]  # fmt: skip
        workers = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                   for _ in range(count)]  # fmt: skip
        for worker in workers:
            if worker.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a packing worker failed to start: {' '.join(command)}")
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        rates = [json.loads(worker.stdout.readline())["images_per_s"] for worker in workers]
        for worker in workers:
            worker.wait()
        rows.append({"processes": count, "total_images_per_s": sum(rates), "per_process": rates})
        print(f"  {count} process(es): {sum(rates):.4g} images/s in total", flush=True)
    return rows


# -- (e) ------------------------------------------------------------------------------------------
def lrp_seconds(device: str, width: int) -> float | None:
    """Seconds for one model's LRP of ``LRP_BATCH`` examples; ``None`` without zennit."""
    if importlib.util.find_spec("zennit") is None:
        return None
    from benloss.explanation.explain import relevance
    from benloss.training.models import KBranchCNN

    model = KBranchCNN(width).to(device).eval()
    inputs = tuple(x.to(device) for x in bench.random_inputs(LRP_BATCH, "cpu", torch.contiguous_format))
    classes = torch.arange(LRP_BATCH, device=device) % 19
    relevance(model, inputs, classes, official_band_statistics())
    synchronize(device)
    return bench.timed(lambda: (relevance(model, inputs, classes, official_band_statistics()), synchronize(device)))


def projection(training: list[dict], packed: list[dict], lrp: float | None, width: int) -> dict:
    """GPU-hours of the paper study on this card: one job per card, and with the best packing."""
    best = fastest(training, width)
    single = packed[0]["total_images_per_s"]
    best_packing = max(packed, key=lambda row: row["total_images_per_s"])
    models = len(PAPER_LOSS_IDS)
    lrp_total = models * (lrp or 0.0)
    note = "measured" if lrp is not None else "zennit missing: LRP not timed (counted as 0)"
    result = {"width": width, "variant": best["variant"], "lrp_seconds_per_model": lrp, "lrp_note": note}
    for name, row in (("one_job_per_card", packed[0]), ("best_packing", best_packing)):
        speedup = row["total_images_per_s"] / single  # validation and evaluation gain as training does
        train_s = models * EPOCHS * bench.TRAIN_IMAGES / row["total_images_per_s"]
        val_s = models * EPOCHS * bench.VAL_IMAGES / (best["forward_images_per_s"] * speedup)
        eval_s = models * bench.TEST_IMAGES / (best["forward_images_per_s"] * speedup)
        seconds = train_s + val_s + eval_s + lrp_total
        result[name] = {"processes": row["processes"], "train_hours": train_s / 3600, "validation_hours": val_s / 3600,
                        "evaluation_hours": eval_s / 3600, "lrp_hours": lrp_total / 3600,
                        "gpu_hours": seconds / 3600, "meets_1_gpu_hour_goal": seconds <= 3600}  # fmt: skip
    return result


# -- the report -----------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    lines = [f"# GPU check: {result['device_name']}", "",
             f"{result['date']}, torch {result['torch']}, CUDA {result['cuda']}, smoke: {result['smoke']}", "",
             "## (a) Tests marked gpu", "", "| test | outcome | message |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {t['test']} | {t['outcome']} | {t['message']} |" for t in result["tests"]["tests"]]
    lines += ["", "## (b) Training, images/s (cudnn.benchmark on)", "",
              "| width | variant | training | forward |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['width']} | {r['variant']} | {r['train_images_per_s']:.4g} | {r['forward_images_per_s']:.4g} |"
              for r in result["training"]]  # fmt: skip
    widths = [key for key in result["loader"][0] if key.startswith("x_fastest")]
    lines += ["", "## (c) Loader routes, images/s, and over the fastest training variant", "",
              "| route | images/s | " + " | ".join(w.replace("x_fastest_training_", "× ") for w in widths) + " |",
              "|---" * (2 + len(widths)) + "|"]  # fmt: skip
    lines += [f"| {r['route']} | {r['images_per_s']:.4g} | " + " | ".join(f"{r[w]:.1f}" for w in widths) + " |"
              for r in result["loader"]]  # fmt: skip
    lines += ["", f"## (d) Packing: {result['packing_variant']}, width {result['projection']['width']}", "",
              "| processes | total images/s |", "|---|---|"]  # fmt: skip
    lines += [f"| {r['processes']} | {r['total_images_per_s']:.4g} |" for r in result["packing"]]
    p = result["projection"]
    lines += ["", "## (e) The paper study on this card", "",
              f"7 losses × {EPOCHS} epochs × ({bench.TRAIN_IMAGES:,} training + {bench.VAL_IMAGES:,} validation "
              f"images), evaluation of {bench.TEST_IMAGES:,} test images per model, LRP ({p['lrp_note']}).", "",
              "| setup | processes | train h | validation h | evaluation h | LRP h | GPU-hours | ≤ 1 GPU-hour |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in ("one_job_per_card", "best_packing"):
        r = p[name]
        lines.append(f"| {name.replace('_', ' ')} | {r['processes']} | {r['train_hours']:.2f} | "
                     f"{r['validation_hours']:.2f} | {r['evaluation_hours']:.3f} | {r['lrp_hours']:.4f} | "
                     f"{r['gpu_hours']:.2f} | {'yes' if r['meets_1_gpu_hour_goal'] else 'no'} |")  # fmt: skip
    lines += ["", f"## (f) Architectures, batch {result['sizes']['batch']} (K-Branch at width {p['width']})", "",
              "7 losses × 80 epochs of training and validation, and one test evaluation, one job per card, for one "
              "seed (the paper configs train three: × 3).", "",
              "| architecture | variant | training images/s | forward images/s | peak GiB | study GPU-hours |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["architectures"]:
        if "skipped" in r:
            lines.append(f"| {r['architecture']} | skipped: {r['skipped']} | | | | |")
            continue
        memory = "n/a" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.1f}"
        lines.append(f"| {r['name']} | {r['variant']} | {r['train_images_per_s']:.4g} | "
                     f"{r['forward_images_per_s']:.4g} | {memory} | {r['study_gpu_hours']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def check(out: Path, smoke: bool, packing_seconds: float | None = None, architectures: list[str] | None = None) -> dict:
    """Run (a) to (e), write ``gpu_check.json`` and ``gpu_check.md`` to ``out``, return the results."""
    sizes = SMOKE if smoke else FULL
    if packing_seconds is not None:
        sizes = Sizes(**(asdict(sizes) | {"packing_seconds": packing_seconds}))
    device = "cpu" if smoke else "cuda"
    torch.backends.cudnn.benchmark = True
    out.mkdir(parents=True, exist_ok=True)
    print("(a) tests marked gpu", flush=True)
    tests = gpu_tests(out, smoke)
    print("(b) training variants", flush=True)
    training = training_speed(device, sizes)
    with tempfile.TemporaryDirectory() as work:
        print("(c) loader routes", flush=True)
        loading = loader_speed(device, sizes, Path(work), training)
    width = max(sizes.widths)
    variant = fastest(training, width)["variant"]
    if device == "cuda":  # the packed processes get the card's memory this process no longer needs
        torch.cuda.empty_cache()
    print(f"(d) packing ({variant}, width {width})", flush=True)
    packed = packing(device, sizes, width, variant)
    print("(e) projection", flush=True)
    lrp = lrp_seconds(device, width)
    print("(f) architectures", flush=True)
    from benloss.architectures import ARCHITECTURE_IDS

    timed_architectures = architecture_speed(device, sizes, list(architectures or ARCHITECTURE_IDS), width)
    result = {
        "device_name": torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke run)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__, "cuda": torch.version.cuda, "smoke": smoke, "sizes": asdict(sizes),
        "tests": tests, "training": training, "loader": loading, "packing_variant": variant, "packing": packed,
        "projection": projection(training, packed, lrp, width), "architectures": timed_architectures,
    }  # fmt: skip
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    summary = markdown(result)
    (out / "gpu_check.md").write_text(summary)
    print(summary)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "gpu",
                        help="folder for gpu_check.json, gpu_check.md and the tests' JUnit report")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="every step on the CPU at tiny sizes (seconds)")
    parser.add_argument("--packing-seconds", type=float, default=None,
                        help="seconds each packing round trains (default 60; 1 with --smoke)")  # fmt: skip
    parser.add_argument("--architectures", nargs="+", default=None,
                        help="architectures timed in (f) (default: every one of benloss.architectures)")  # fmt: skip
    parser.add_argument("--pack-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pack_worker:
        pack_worker(args)
        return 0
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False). Run it on a GPU machine, "
              "or run `--smoke` to check the script on the CPU.", file=sys.stderr)  # fmt: skip
        return 2
    result = check(args.out, args.smoke, args.packing_seconds, args.architectures)
    return 1 if result["tests"]["returncode"] not in (0, 5) else 0


if __name__ == "__main__":
    sys.exit(main())
