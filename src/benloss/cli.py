"""``python -m benloss <step>``: every workflow step as a command; each calls one package function."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import TYPE_CHECKING

from benloss.architectures.registry import ARCHITECTURE_IDS, DEFAULT_ARCHITECTURE
from benloss.errors import BenlossError
from benloss.facts.patch_names import GRID_SIDE
from benloss.facts.splits import SPLITS

log = logging.getLogger("benloss")

if TYPE_CHECKING:
    from benloss.data.sources import Source


LISTS = ("train", "val", "test", "snow", "cloud")


def _source(args: argparse.Namespace) -> Source:
    from benloss.data.sources import open_source

    given = [getattr(args, name) for name in LISTS]
    lists = None if None in given else {name: Path(getattr(args, name)) for name in LISTS}
    return open_source(
        args.dataset, args.layout, args.archive, reference_maps=args.reference_maps, metadata=args.metadata,
        exclusions=args.exclusions, lists=lists, band_statistics=args.band_statistics,
    )  # fmt: skip


def _add_source(parser: argparse.ArgumentParser) -> None:
    from benloss.data.sources import DATASETS

    parser.add_argument("--dataset", choices=DATASETS, required=True, help="which data source the files are")
    parser.add_argument(
        "--layout", choices=("v1", "v2"), default="v1", help="the demo's layout (BigEarthNet v1.0/v2.0)"
    )
    parser.add_argument("--archive", type=Path, required=True, help="the Sentinel-2 archive (tar file or folder)")
    parser.add_argument("--reference-maps", type=Path, help="the reference-map archive (v2.0 and the demo)")
    parser.add_argument("--metadata", type=Path, help="metadata.parquet (v2.0 layout)")
    parser.add_argument("--exclusions", type=Path, help="the snow/cloud/shadow metadata parquet (v2.0 layout)")
    for name in LISTS:
        parser.add_argument(f"--{name}", help=f"the {name} list, one patch name per line (v1.0 layout)")
    parser.add_argument("--band-statistics", type=Path, help="band,mean,std file that normalises (v1.0 layout)")


def _add_gpu_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    parser.add_argument("--jobs-per-gpu", type=int, default=1,
                        help="jobs sharing one card when no scheduler assigns devices (see benloss.gpu)")  # fmt: skip
    parser.add_argument("--gpu-lock-dir", type=Path, default=None,
                        help="folder of the GPU slot locks, shared by all jobs on the machine (default: under the "
                        "system temp folder)")  # fmt: skip


def _add_resampling_options(parser: argparse.ArgumentParser) -> None:
    """How the bootstrap resamples the test set (the config's ``statistics`` section)."""
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the test set")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resamples")
    parser.add_argument(
        "--block",
        type=int,
        default=GRID_SIDE,
        help="side of the resampled blocks, in patch positions of an acquisition (1: per patch)",
    )


def cmd_synth(args: argparse.Namespace) -> None:
    from benloss.data.synth import SynthConfig, make_demo_archive

    make_demo_archive(args.out, SynthConfig(patches=args.patches, seed=args.seed, format=args.format))


def cmd_download(args: argparse.Namespace) -> None:
    from benloss.data.download import download

    download(args.url, args.out, args.md5, retries=args.retries)


def cmd_labels(args: argparse.Namespace) -> None:
    from benloss.data.labels import write_labels

    write_labels(_source(args), args.out)


def cmd_encode(args: argparse.Namespace) -> None:
    from benloss.data.encode import encode

    encode(_source(args), args.labels, args.out)


def cmd_prepare(args: argparse.Namespace) -> None:
    from benloss.data.prepare import prepare
    from benloss.data.selection import Selection
    from benloss.data.subset import Subset

    sizes = {split: getattr(args, f"subset_{split}") for split in SPLITS}
    selection = Selection(Subset(sizes, args.subset_seed), allow_missing=args.allow_missing)
    prepare(_source(args), args.labels_out, args.out, selection)


def cmd_train(args: argparse.Namespace) -> None:
    from benloss.gpu import gpu_slot
    from benloss.training.config import TrainConfig
    from benloss.training.train import train

    config = TrainConfig.from_sections(json.loads(args.training), json.loads(args.model), args.loss, args.seed,
                                       json.loads(args.loss_params), architecture=args.architecture)  # fmt: skip
    config.snapshots = args.snapshots
    with gpu_slot(config.device, args.jobs_per_gpu, args.gpu_lock_dir):
        train(config, args.encoded, args.class_counts, args.out)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from benloss.evaluation.evaluate import evaluate
    from benloss.gpu import gpu_slot

    with gpu_slot(args.device, args.jobs_per_gpu, args.gpu_lock_dir):
        evaluate(args.model, args.val_scores, args.encoded, args.out, threads=args.threads, device=args.device)


def cmd_bootstrap(args: argparse.Namespace) -> None:
    from benloss.evaluation.comparison import write_bootstrap

    write_bootstrap(args.metrics, args.test_scores, args.runs, args.encoded, args.class_counts, args.out,
                    n_boot=args.bootstrap, seed=args.seed, block=args.block)  # fmt: skip


def cmd_architectures(args: argparse.Namespace) -> None:
    from benloss.evaluation.architectures import write_architecture_comparison

    write_architecture_comparison(args.metrics, args.test_scores, args.runs, args.encoded, args.out,
                                  n_boot=args.bootstrap, seed=args.seed, block=args.block)  # fmt: skip


def cmd_landscape(args: argparse.Namespace) -> None:
    import torch

    from benloss.gpu import gpu_slot
    from benloss.landscape.landscape import write_landscape

    torch.set_num_threads(max(1, args.threads))
    with gpu_slot(args.device, args.jobs_per_gpu, args.gpu_lock_dir):
        write_landscape(args.model, args.snapshots, args.encoded, args.class_counts, args.out, grid=args.grid,
                        span=args.span, images=args.images, seed=args.seed, radius=args.radius,
                        iterations=args.iterations, device=args.device)  # fmt: skip


def cmd_landscapes(args: argparse.Namespace) -> None:
    from benloss.landscape.summary import write_landscape_summary

    write_landscape_summary(args.arrays, args.summaries, args.out)


def cmd_tables(args: argparse.Namespace) -> None:
    from benloss.report.tables import write_tables

    write_tables(args.metrics, args.per_class, args.histories, args.class_counts, args.out, demo=args.demo,
                 intervals=args.intervals, landscape=args.landscape)  # fmt: skip


def cmd_figures(args: argparse.Namespace) -> None:
    from benloss.report.figures import write_figures

    write_figures(args.histories, args.class_counts, args.out, pairwise=args.pairwise, pr_curve_files=args.pr_curves,
                  reliability_files=args.reliability)  # fmt: skip


def cmd_explain(args: argparse.Namespace) -> None:
    from benloss.explanation.explain import explain
    from benloss.gpu import gpu_slot

    with gpu_slot(args.device, args.jobs_per_gpu, args.gpu_lock_dir):
        explain(args.models, args.encoded, json.loads(args.examples), args.out, per_class=args.per_class,
                seed=args.seed, threads=args.threads, device=args.device)  # fmt: skip


def cmd_report(args: argparse.Namespace) -> None:
    from benloss.report.html import ReportInputs, build_report

    build_report(ReportInputs(**{f.name: getattr(args, f.name) for f in fields(ReportInputs)}), args.out)


def _add_report_inputs(parser: argparse.ArgumentParser) -> None:
    """One option per field of ``ReportInputs`` (the report rule's inputs under the same names)."""
    from benloss.report.html import REPORT_INPUT_HELP, ReportInputs

    for f in fields(ReportInputs):
        many = str(f.type).startswith("list")
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=Path, nargs="+" if many else None,
                            required=f.default is MISSING, help=REPORT_INPUT_HELP[f.name])  # fmt: skip


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="benloss", description=__doc__)
    main.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks of failures")
    steps = main.add_subparsers(dest="step", required=True, metavar="STEP")

    p = steps.add_parser("synth", help="write the demo archive (BigEarthNet format, synthetic content)")
    p.add_argument("--out", type=Path, required=True, help="folder of the demo archive, its lists and maps")
    p.add_argument("--patches", type=int, default=1000, help="number of patches")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic content")
    p.add_argument("--format", choices=("v1", "v2"), default="v1", help="BigEarthNet v1.0 or v2.0 layout")
    p.set_defaults(func=cmd_synth)

    p = steps.add_parser("download", help="download an archive with resume and md5 verification")
    p.add_argument("--url", required=True, help="the file's URL")
    p.add_argument("--md5", required=True, help="its official md5 (hex)")
    p.add_argument("--out", type=Path, required=True, help="where the verified file goes")
    p.add_argument("--retries", type=int, default=8, help="attempts, resuming each time, before giving up")
    p.set_defaults(func=cmd_download)

    p = steps.add_parser("labels", help="BigEarthNet-19 labels, splits and exclusions of every patch")
    _add_source(p)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=cmd_labels)

    p = steps.add_parser("encode", help="encode the kept patches into memory-mappable arrays")
    _add_source(p)
    p.add_argument("--labels", type=Path, required=True, help="patches.parquet of the label stage")
    p.add_argument("--out", type=Path, required=True, help="folder of the encoded arrays")
    p.set_defaults(func=cmd_encode)

    p = steps.add_parser("prepare", help="labels and encode in one pass over the archive (the workflow's step)")
    _add_source(p)
    p.add_argument("--labels-out", type=Path, required=True, help="folder of the label table and its summaries")
    p.add_argument("--out", type=Path, required=True, help="folder of the encoded arrays")
    for split in SPLITS:
        p.add_argument(f"--subset-{split}", type=float, default=1.0,
                       help=f"{split} split's subset: a fraction (0 < f <= 1) or a patch count (above 1)")  # fmt: skip
    p.add_argument("--subset-seed", type=int, default=0, help="seed of the stratified subset draw")
    p.add_argument("--allow-missing", action="store_true",
                   help="drop and count listed patches the archive lacks (default: stop with an error)")  # fmt: skip
    p.set_defaults(func=cmd_prepare)

    p = steps.add_parser("train", help="train one model (an architecture) with one loss")
    p.add_argument("--encoded", type=Path, required=True, help="the encoded arrays (train and val splits)")
    p.add_argument("--class-counts", type=Path, required=True, help="class_counts.csv (W-CEL's class weights)")
    p.add_argument("--out", type=Path, required=True, help="the model's folder (model, history, checkpoint)")
    p.add_argument("--loss", required=True, help="loss id (benloss.facts.loss_catalog.LOSS_IDS)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and batch order")
    p.add_argument("--architecture", default=DEFAULT_ARCHITECTURE, choices=ARCHITECTURE_IDS,
                   help="the model's architecture (benloss.architectures)")  # fmt: skip
    p.add_argument("--training", default="{}", help="the config's training section as JSON (absent keys: defaults)")
    p.add_argument("--model", default='{"width": 1024}',
                   help="the config's model section as JSON (width; recipes per architecture)")  # fmt: skip
    p.add_argument("--loss-params", default="{}", help="JSON object of the loss's parameters")
    p.add_argument("--snapshots", type=int, default=0,
                   help="weight snapshots kept, evenly spaced, the last after the last epoch (0: none)")  # fmt: skip
    p.add_argument("--jobs-per-gpu", type=int, default=1,
                   help="jobs sharing one card when no scheduler assigns devices (see benloss.gpu)")  # fmt: skip
    p.add_argument("--gpu-lock-dir", type=Path, default=None,
                   help="folder of the GPU slot locks, shared by all jobs on the machine (default: under the "
                   "system temp folder)")  # fmt: skip
    p.set_defaults(func=cmd_train)

    p = steps.add_parser("evaluate", help="test-split metrics of one trained model")
    p.add_argument("--model", type=Path, required=True, help="the trained model.pt")
    p.add_argument("--val-scores", type=Path, required=True, help="its validation scores (threshold calibration)")
    p.add_argument("--encoded", type=Path, required=True, help="the encoded arrays (test split)")
    p.add_argument("--out", type=Path, required=True, help="the evaluation folder (metrics, per-class, scores)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of torch")
    _add_gpu_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = steps.add_parser("bootstrap", help="paired bootstrap: Table 1 intervals and pairwise differences")
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="every model's metrics.json")
    p.add_argument("--test-scores", type=Path, nargs="+", required=True, help="every model's test_scores.npy")
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="every model's run.json (loss parameters)")
    p.add_argument("--encoded", type=Path, required=True, help="the encoded arrays (test labels)")
    p.add_argument("--class-counts", type=Path, required=True, help="class_counts.csv (picks the rare classes)")
    p.add_argument("--out", type=Path, required=True, help="output folder (intervals.csv, pairwise.csv)")
    _add_resampling_options(p)
    p.set_defaults(func=cmd_bootstrap)

    p = steps.add_parser("architectures", help="the losses' rankings compared across architectures (Kendall's tau)")
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="every architecture's models' metrics.json")
    p.add_argument("--test-scores", type=Path, nargs="+", required=True,
                   help="every architecture's models' test_scores.npy")  # fmt: skip
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="every architecture's models' run.json")
    p.add_argument("--encoded", type=Path, required=True, help="the encoded arrays (test labels, patch names)")
    p.add_argument("--out", type=Path, required=True, help="output folder (headline, ranking, agreement, figure)")
    _add_resampling_options(p)
    p.set_defaults(func=cmd_architectures)

    p = steps.add_parser("landscape", help="one model's loss landscape: surfaces, trajectory, measured convexity")
    p.add_argument("--model", type=Path, required=True, help="the trained model.pt")
    p.add_argument("--snapshots", type=Path, nargs="+", required=True, help="its weight snapshots (snapshot<NN>.pt)")
    p.add_argument("--encoded", type=Path, required=True, help="the encoded arrays (training split)")
    p.add_argument("--class-counts", type=Path, required=True, help="class_counts.csv (W-CEL's class weights)")
    p.add_argument("--out", type=Path, required=True, help="the landscape's folder (landscape.npz, landscape.json)")
    p.add_argument("--grid", type=int, default=25, help="points per axis of each surface (odd)")
    p.add_argument("--span", type=float, default=1.0, help="half-width of the random-direction surface")
    p.add_argument("--images", type=int, default=512, help="training images the surfaces are measured on")
    p.add_argument("--seed", type=int, default=0, help="seed of those images and of the random directions")
    p.add_argument("--radius", type=float, default=0.5, help="filter-normalised radius of the sharpness")
    p.add_argument("--iterations", type=int, default=20, help="Hessian-vector products for the eigenvalues")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of torch")
    _add_gpu_options(p)
    p.set_defaults(func=cmd_landscape)

    p = steps.add_parser("landscapes", help="an architecture's landscapes: Fig. 3, slices and measured convexity")
    p.add_argument("--arrays", type=Path, nargs="+", required=True, help="every model's landscape.npz")
    p.add_argument("--summaries", type=Path, nargs="+", required=True, help="every model's landscape.json")
    p.add_argument("--out", type=Path, required=True, help="the architecture's folder (figures/, tables/)")
    p.set_defaults(func=cmd_landscapes)

    p = steps.add_parser("tables", help="Table 1, Table 2 and the per-class table")
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="every model's metrics.json")
    p.add_argument("--per-class", type=Path, nargs="+", required=True, help="every model's per_class.csv")
    p.add_argument("--histories", type=Path, nargs="+", required=True, help="every model's history.csv")
    p.add_argument("--class-counts", type=Path, required=True, help="class_counts.csv (the rare classes)")
    p.add_argument("--out", type=Path, required=True, help="the tables folder")
    p.add_argument("--demo", action="store_true", help="label the comparison with the paper as a demo")
    p.add_argument("--intervals", type=Path, default=None, help="the bootstrap's intervals.csv")
    p.add_argument("--landscape", type=Path, default=None, help="the landscapes' landscape.csv (measured convexity)")
    p.set_defaults(func=cmd_tables)

    p = steps.add_parser("figures", help="Fig. 2 learning curves, class counts, pairwise matrix, PR and reliability")
    p.add_argument("--histories", type=Path, nargs="+", required=True, help="every model's history.csv")
    p.add_argument("--class-counts", type=Path, required=True, help="class_counts.csv")
    p.add_argument("--pairwise", type=Path, default=None, help="the bootstrap's pairwise.csv")
    p.add_argument("--pr-curves", type=Path, nargs="+", default=(), help="every model's pr_curve.csv")
    p.add_argument("--reliability", type=Path, nargs="+", default=(), help="every model's reliability.csv")
    p.add_argument("--out", type=Path, required=True, help="the figures folder")
    p.set_defaults(func=cmd_figures)

    p = steps.add_parser("explain", help="LRP heatmaps (Fig. 1), their checks and scores against reference maps")
    p.add_argument("--models", type=Path, nargs="+", required=True, help="one model.pt per loss to explain")
    p.add_argument("--encoded", type=Path, required=True, help="the encoded folder (test split, reference maps)")
    p.add_argument("--examples", required=True, help="Fig. 1's examples: JSON list of {class, patch?}")
    p.add_argument("--per-class", type=int, default=100, help="test patches per class scored against reference maps")
    p.add_argument("--seed", type=int, default=0, help="seed of the stratified sample and the bootstrap")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the architecture's folder (<run>/<arch>) to write figures/, tables/, explain/ into",
    )
    p.add_argument("--threads", type=int, default=1, help="CPU threads")
    _add_gpu_options(p)
    p.set_defaults(func=cmd_explain)

    p = steps.add_parser("report", help="the self-contained HTML report")
    _add_report_inputs(p)
    p.add_argument("--out", type=Path, required=True, help="the report's HTML file")
    p.set_defaults(func=cmd_report)
    return main


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        args.func(args)
    except (BenlossError, FileNotFoundError) as error:
        # Expected failures (bad input, a missing file, a full disk): the message names the file and the problem;
        # the traceback only with --verbose. Anything else (CUDA, a bug) propagates with its whole traceback.
        log.error("%s failed: %s", args.step, error, exc_info=args.verbose)
        sys.exit(1)
