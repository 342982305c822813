"""Time the two-level bootstrap at BigEarthNet-19's test size, on one core: 125,866 images x 19 classes x 9 losses
x 3 seeds, B = 2,000, test patches resampled by whole scenes (block 91) of the official v1.0 test list.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bootstrap.py  # full size
    PYTHONPATH=src .venv/bin/python benchmarks/bootstrap.py --quick    # tiny, for the smoke test

Labels and scores are random (each class present with probability 0.15, scores normal plus 1 on the positives); the
time does not depend on them. As ``benloss bootstrap`` does, every model is bootstrapped under its three decision
rules (threshold metrics), its ranking scores are bootstrapped (threshold-free metrics), and the seeds are combined
into Table 1's intervals and the pairwise table. The environment variables above hold BLAS to one thread (the
result's ``blas_threads`` says what the run had).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np

from benloss.evaluation.blocks import block_ids, block_sizes
from benloss.evaluation.bootstrap import N_BOOT, bootstrap_metrics, interval_table, pairwise_table, seed_draws
from benloss.evaluation.comparison import bootstrap_ranking
from benloss.facts.patch_names import GRID_SIDE
from benloss.facts.splits import read_list

V1_TEST = Path(__file__).resolve().parents[1] / "resources/splits/test.csv.bz2"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses", type=int, default=9, help="losses")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per loss")
    parser.add_argument("--classes", type=int, default=19, help="classes")
    parser.add_argument("--boot", type=int, default=N_BOOT, help="bootstrap replicates")
    parser.add_argument("--block", type=int, default=GRID_SIDE, help="block side in patch positions (default: a scene)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    args = parser.parse_args(argv)
    names = read_list(V1_TEST)
    if args.quick:
        names, args.losses, args.seeds, args.boot = names[::200], 2, 2, 50
    rng = np.random.default_rng(0)
    labels = rng.random((len(names), args.classes)) < 0.15
    models = [(f"loss{loss}", seed) for loss in range(args.losses) for seed in range(args.seeds)]
    scores = [(rng.normal(size=labels.shape) + labels).astype(np.float32) for _ in models]
    started = {"all": time.perf_counter()}
    blocks = block_ids(names, args.block)
    rules = [s >= t for s in scores for t in (0.5, 0.4, 0.6)]  # three decision rules per model
    started["threshold"] = time.perf_counter()
    observed, replicates = bootstrap_metrics(rules, labels, range(args.classes // 3), args.boot, blocks=blocks)
    started["ranking"] = time.perf_counter()
    ranking = bootstrap_ranking([s.astype(np.float64) for s in scores], labels, blocks, args.boot, 0)
    started["combine"] = time.perf_counter()
    draws = seed_draws(args.boot, args.seeds, 0)
    own = list(range(0, len(rules), 3))
    interval_table(observed[own], replicates[:, own], [("own", *model) for model in models], draws)
    pairwise_table(ranking.observed, ranking.replicates, models, ["map_macro", "map_micro", "auroc_macro"], draws)
    ended = time.perf_counter()
    result = {"images": len(names), "blocks": len(block_sizes(blocks)), "classes": args.classes,
              "losses": args.losses, "seeds": args.seeds, "replicates": args.boot,
              "threshold_seconds": started["ranking"] - started["threshold"],
              "ranking_seconds": started["combine"] - started["ranking"], "combine_seconds": ended - started["combine"],
              "total_seconds": ended - started["all"], "cpu_seconds": time.process_time(),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "blas_threads": float(os.environ.get("OPENBLAS_NUM_THREADS", "nan"))}  # fmt: skip
    print(", ".join(f"{key} {value:.6g}" for key, value in result.items()))
    return result


if __name__ == "__main__":
    main()
