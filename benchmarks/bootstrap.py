"""Time the paired bootstrap at BigEarthNet-19's test size: 125,866 images x 19 classes x 7 losses, B = 2,000.

    PYTHONPATH=src .venv/bin/python benchmarks/bootstrap.py            # the full size
    PYTHONPATH=src .venv/bin/python benchmarks/bootstrap.py --quick    # tiny, for the smoke test

Predictions are random (each entry right with probability 0.8 to 0.9); the time does not depend on them. Each loss
is bootstrapped under both decision rules (its own and calibrated thresholds), as ``benloss bootstrap`` does.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from benloss.evaluation.bootstrap import CHUNK, N_BOOT, bootstrap_metrics


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=125_866, help="test images (BigEarthNet-19's test split)")
    parser.add_argument("--classes", type=int, default=19, help="classes")
    parser.add_argument("--models", type=int, default=14, help="models: 7 losses x 2 decision rules")
    parser.add_argument("--boot", type=int, default=N_BOOT, help="bootstrap replicates")
    parser.add_argument("--chunk", type=int, default=CHUNK, help="replicates per matrix product")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.models, args.boot = 500, 3, 50
    rng = np.random.default_rng(0)
    labels = rng.random((args.images, args.classes)) < 0.15
    predictions = [np.where(rng.random(labels.shape) < 0.8 + 0.01 * m, labels, ~labels) for m in range(args.models)]
    started, cpu_started = time.perf_counter(), time.process_time()
    bootstrap_metrics(predictions, labels, rare=range(args.classes // 3), n_boot=args.boot, chunk=args.chunk)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"images": args.images, "classes": args.classes, "models": args.models, "replicates": args.boot,
              "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peak_mb}  # fmt: skip
    print(", ".join(f"{key} {value:.6g}" for key, value in result.items()))
    return result


if __name__ == "__main__":
    main()
