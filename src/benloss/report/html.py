"""The final report: one self-contained HTML page built with Jinja2 from the tables and figures of a run."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from jinja2 import Environment, FileSystemLoader, select_autoescape

from benloss.architectures import architecture
from benloss.atomic import atomic_outputs
from benloss.evaluation.metrics import CALIBRATION
from benloss.evaluation.results import by_model
from benloss.explanation.conservation import TOLERANCE, summarise_conservation
from benloss.explanation.scores import ALL_CLASSES
from benloss.facts.loss_catalog import LOSS_IDS, PAPER_LOSS_IDS, loss_info
from benloss.facts.nomenclature import classes
from benloss.facts.paper import CITATION, TEXT_VERSUS_MATHS
from benloss.facts.paper import TABLE2_CRITERIA as PAPER_CRITERIA
from benloss.facts.splits import SPLITS
from benloss.layout import ENCODED_FILES
from benloss.report.across_architectures import across_architectures
from benloss.report.guidelines import ALPHA, RULES, TESTED, guidelines, paper_best
from benloss.report.tables import (
    MEASURED_CONVEXITY,
    PAPER_COUNTERPARTS,
    TABLE2_CRITERIA,
    agreement_summary,
    format_cell,
    paper_table1,
)

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).parent / "templates"
PACKAGES = ("torch", "timm", "zennit", "snakemake", "rasterio", "numpy", "pandas", "matplotlib", "jinja2")


def data_uri(path: Path) -> str:
    """Embed a PNG so the page needs nothing but itself."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def md5(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               cwd=Path(__file__).parent).stdout.strip()  # fmt: skip
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _heat_colour(value: float) -> str:
    """White to blue for F1 in [0, 1]."""
    v = 0.0 if np.isnan(value) else float(np.clip(value, 0, 1))
    r, g, b = (int(255 - v * (255 - c)) for c in (8, 81, 156))
    return f"rgb({r},{g},{b})"


@dataclass(frozen=True)
class ReportInputs:
    """Every file the report reads; each field is a ``benloss report`` option and an input of its rule."""

    config: Path
    summary: Path
    encoded: Path
    table1: Path
    table2: Path
    per_class: Path
    pairwise: Path
    lrp_scores: Path
    conservation: Path
    zbox_bounds: Path
    class_counts_figure: Path
    f1_curves: Path
    f1_time: Path
    pairwise_figure: Path
    per_class_ap: Path
    probability: Path
    pr_curves_figure: Path
    reliability_figure: Path
    lrp_heatmaps: Path
    lrp_scores_figure: Path
    runs: list[Path]
    baselines: list[Path]
    #: the demo's archive, whose md5 the report computes (real archives were verified at download)
    archive: Path | None = None
    #: with several architectures: their comparison (``architectures/``), each one's pairwise.csv, and the
    #: conservation table of each explained one
    architecture_headline: Path | None = None
    architecture_ranking: Path | None = None
    architecture_agreement: Path | None = None
    architecture_figure: Path | None = None
    architecture_pairwise: list[Path] | None = None
    architecture_conservation: list[Path] | None = None
    #: with landscape.snapshots: Fig. 3 and its slices
    landscape_figure: Path | None = None
    landscape_slices: Path | None = None


REPORT_INPUT_HELP = {
    "config": "the run's configuration as YAML",
    "summary": "labels/summary.json",
    "encoded": "the encoded folder (its meta.json names the dataset)",
    "table1": "tables/table1.csv",
    "table2": "tables/table2.csv",
    "per_class": "tables/per_class_f1.csv",
    "pairwise": "the bootstrap's pairwise.csv",
    "lrp_scores": "tables/lrp_scores.csv",
    "conservation": "explain/conservation.csv",
    "zbox_bounds": "explain/zbox_bounds.csv",
    "class_counts_figure": "figures/class_counts.png",
    "f1_curves": "figures/f1_curves.png",
    "f1_time": "figures/f1_time.png",
    "pairwise_figure": "figures/pairwise_f1.png",
    "per_class_ap": "tables/per_class_ap.csv",
    "probability": "tables/probability.csv",
    "pr_curves_figure": "figures/pr_curves.png",
    "reliability_figure": "figures/reliability.png",
    "lrp_heatmaps": "figures/lrp_heatmaps.png",
    "lrp_scores_figure": "figures/lrp_scores.png",
    "runs": "every model's run.json",
    "baselines": "every model's baseline.json",
    "archive": "the demo archive (its md5 goes into the report)",
    "architecture_headline": "architectures/headline.csv (several architectures)",
    "architecture_ranking": "architectures/ranking.csv",
    "architecture_agreement": "architectures/agreement.csv",
    "architecture_figure": "architectures/ranking.png",
    "architecture_pairwise": "every architecture's <arch>/tables/pairwise.csv",
    "architecture_conservation": "every explained architecture's <arch>/explain/conservation.csv",
    "landscape_figure": "<arch>/figures/landscapes.png (with landscape.snapshots)",
    "landscape_slices": "<arch>/figures/landscape_slices.png",
}


def _heat_table(frame: pd.DataFrame) -> dict:
    """A classes × losses table of values in [0, 1] with a cell colour each."""
    return {
        "losses": list(frame.columns),
        "rows": [
            {"name": name, "cells": [{"value": v, "colour": _heat_colour(v)} for v in row]}
            for name, row in frame.iterrows()
        ],
    }


def _run_records(runs: list[Path]) -> list[dict]:
    records = []
    for loss, _, path in by_model(runs):
        record = json.loads(path.read_text())
        records.append({**record, "loss": loss_info(loss).abbreviation, "seed": record["config"]["seed"]})
    return records


def table1_comparison(ours: pd.DataFrame) -> list[dict]:
    paper = paper_table1()
    rows = []
    for metric in ("P", "R", "F1"):
        row = {"metric": metric, "cells": []}
        for abbreviation in ours["loss"].drop_duplicates():
            mine = ours[(ours["metric"] == metric) & (ours["loss"] == abbreviation)].iloc[0]
            # Later additions (ASL, ZLPR) have no paper numbers: None, shown as "—".
            theirs = float(paper.loc[metric, abbreviation]) if abbreviation in paper.columns else None
            row["cells"].append({"loss": abbreviation, "ours": mine["mean"], "std": mine["std"], "paper": theirs,
                                 "ci_low": mine["ci_low"], "ci_high": mine["ci_high"],
                                 "difference": None if theirs is None else mine["mean"] - theirs})  # fmt: skip
        rows.append(row)
    return rows


def _table1_more(long: pd.DataFrame) -> dict:
    """Table 1's second block as rows of metrics and columns of losses."""
    block = long[~long["metric"].isin(["P", "R", "F1"])]
    losses = list(block["loss"].drop_duplicates())
    rows = []
    for metric, group in block.groupby("metric", sort=False):
        cells = group.set_index("loss").loc[losses]
        rows.append({"metric": metric, "cells": cells[["mean", "std", "ci_low", "ci_high"]].to_dict("records")})
    return {"losses": losses, "rows": rows}


def _dataset(encoded: Path) -> str | None:
    """The dataset and version the encode stage recorded in ``encoded/meta.json``; None where it did not."""
    path = encoded / ENCODED_FILES["meta"]
    meta = json.loads(path.read_text()) if path.exists() else {}
    if "description" in meta:
        return str(meta["description"])
    if "dataset" in meta:
        return f"{meta['dataset']} {meta.get('version', '')}".strip()
    return None


def _zbox_summary(bounds: pd.DataFrame) -> dict:
    """Where ZBox's bounds came from and how many explained pixels the fixed bound 10000 and they leave out."""
    pixels = int(bounds["pixels"].sum())
    return {"source": str(bounds["source"].iloc[0]), "pixels": pixels,
            "above_10000": int(bounds["above_10000"].sum()), "outside_bounds": int(bounds["outside_bounds"].sum()),
            "above_share": bounds["above_10000"].sum() / max(pixels, 1),
            "outside_share": bounds["outside_bounds"].sum() / max(pixels, 1)}  # fmt: skip


def _asked(size: float | int) -> str:
    """A split's requested subset size in words: a fraction as a percentage, a count as patches."""
    return f"{100 * size:g} %" if isinstance(size, float) else f"{size:,} patches"


def selection_view(summary: dict) -> dict:
    """The patches the archive lacked and the subset drawn (``labels/summary.json``), as the report shows them: per
    split the patches listed, present and kept, and per class the subset's patches beside the full split's."""
    subset = summary.get("subset")
    absent = summary.get("listed_but_absent") or {}
    unmapped = summary.get("reference_maps_absent") or {}
    splits = []
    for split in SPLITS:
        kept = summary["kept"][split]
        present = subset["splits"][split]["of"] if subset else kept
        splits.append({"split": split, "listed": present + absent.get(split, 0), "present": present, "kept": kept,
                       "asked": _asked(subset["splits"][split]["requested"]) if subset else None,
                       "unmapped": unmapped.get(split, 0)})  # fmt: skip
    per_class = []
    for name in classes() if subset else ():
        cells = [subset["splits"][split]["classes"][name] for split in SPLITS]
        per_class.append({"name": name, "cells": cells})
    return {
        "missing": sum(absent.values()) > 0,
        "unmapped": sum(unmapped.values()),
        "subset": subset is not None,
        "seed": subset["seed"] if subset else None,
        "method": subset["method"] if subset else None,
        "splits": splits,
        "classes": per_class,
    }


def seed_spreads(long: pd.DataFrame) -> list[dict]:
    """Sample F1 per loss: seed mean ± std beside its two-level interval, and which spread dominates."""
    rows = long[(long["metric"] == "F1") & (long["seeds"] > 1)]
    return rows[["loss", "mean", "std", "ci_low", "ci_high", "test_se", "dominant_spread"]].to_dict("records")


def _agreement(table2: pd.DataFrame) -> list[dict]:
    """Per paper criterion: the measured mark compared and how many losses agree."""
    return agreement_summary(table2).to_dict("records")


def _architecture_of_table(path: Path) -> str:
    """The architecture of a file under ``<run>/<arch>/tables/`` or ``<run>/<arch>/explain/``."""
    return Path(path).parent.parent.name


def _pivot(frame: pd.DataFrame, index: list[str], value_columns: list[str]) -> dict:
    """Rows of ``index`` values with one cell (a dict of ``value_columns``) per loss, losses in table order."""
    losses = list(frame["loss"].drop_duplicates())
    rows = []
    for key, group in frame.groupby(index, sort=False):
        cells = group.set_index("loss").reindex(losses)[value_columns].to_dict("records")
        rows.append({"key": key, "cells": cells})
    return {"losses": losses, "rows": rows}


def architecture_view(config: dict, inputs: ReportInputs) -> dict:
    """The architectures studied, which one the report's body and Fig. 1 are about, those left out of the
    explanations and why, and with several architectures their comparison."""
    studied = [architecture(a) for a in config["model"]["architectures"]]
    explained = [a for a in studied if a.explained]
    view = {
        "studied": [a.name for a in studied],
        "primary": studied[0].name,
        "explained": explained[0].name if explained else None,
        "left_out": [(a.name, a.not_explained) for a in studied if not a.explained],
        "compared": inputs.architecture_headline is not None,
    }
    if not view["compared"]:
        return view
    name = {a.id: a.name for a in studied}
    headline = pd.read_csv(inputs.architecture_headline).assign(architecture=lambda f: f["architecture"].map(name))
    ranking = pd.read_csv(inputs.architecture_ranking)
    agreement = pd.read_csv(inputs.architecture_agreement)
    for column in ("architecture_a", "architecture_b"):
        agreement[column] = agreement[column].map(name)
    ranking["architecture"] = ranking["architecture"].map(name)
    pairwise = {_architecture_of_table(p): pd.read_csv(p) for p in inputs.architecture_pairwise or []}
    _, sentences = across_architectures(pairwise)
    conservation = []
    for path in inputs.architecture_conservation or []:
        for row in summarise_conservation(pd.read_csv(path)).to_dict("records"):
            conservation.append({"architecture": name[_architecture_of_table(path)], **row})
    winners = ranking[ranking["winner"]].groupby(["metric", "architecture"], sort=False)["loss"].agg(", ".join)
    view |= {
        "headline": _pivot(headline, ["metric", "architecture"], ["mean", "ci_low", "ci_high"]),
        "ranks": _pivot(ranking, ["metric", "architecture"], ["rank", "p_best"]),
        "winners": [{"metric": m, "architecture": a, "losses": w} for (m, a), w in winners.items()],
        "agreement": agreement.to_dict("records"),
        "sentences": sentences,
        "conservation": conservation,
        "figure": data_uri(inputs.architecture_figure),
    }
    return view


def context(inputs: ReportInputs) -> dict:
    """Everything the template shows, read from the given files; the template computes nothing."""
    config_text = Path(inputs.config).read_text()
    config = yaml.safe_load(config_text)
    demo = config["data"]["source"] == "demo"
    summary = json.loads(Path(inputs.summary).read_text())
    table1_long = pd.read_csv(inputs.table1)
    # the paper's "NA" (not applied) is a mark, not a missing value
    table2 = pd.read_csv(inputs.table2, index_col="loss", keep_default_na=False, na_values=[""])
    per_class = pd.read_csv(inputs.per_class, index_col=0)
    per_class_ap = pd.read_csv(inputs.per_class_ap, index_col=0)
    probability = pd.read_csv(inputs.probability)
    pairwise = pd.read_csv(inputs.pairwise)
    conservation = pd.read_csv(inputs.conservation)
    if demo and inputs.archive is not None and Path(inputs.archive).is_file():
        checksum = md5(Path(inputs.archive))
    elif config["data"]["source"] == "bigearthnet-v2":
        checksum = config["data"]["v2"]["download"]["s2"]["md5"] + " (verified at download)"
        if config["data"]["v2"]["s2"]:
            checksum = "not checked: a local copy (data.v2.s2)"
    else:
        checksum = config["data"]["download"]["md5"] + " (verified at download)"
        if config["data"]["archive"]:
            checksum = "not checked: a local copy (data.archive)"
    runs = _run_records(inputs.runs)
    baselines = [json.loads(Path(path).read_text()) for path in sorted(map(str, inputs.baselines))]
    lrp = pd.read_csv(inputs.lrp_scores)
    bounds = pd.read_csv(inputs.zbox_bounds)
    return {
        "title": f"benloss report: run {config['run']}",
        "demo": demo,
        "dataset": _dataset(Path(inputs.encoded)),
        "citation": CITATION,
        "config": config,
        "config_text": config_text,
        "summary": summary,
        "checksum": checksum,
        "kept_total": sum(summary["kept"].values()),
        "selection": selection_view(summary),
        "runs": runs,
        "baseline": baselines[0] if baselines else None,
        "table1": table1_comparison(table1_long),
        "table1_more": _table1_more(table1_long),
        "spreads": seed_spreads(table1_long),
        "pairwise": pairwise[pairwise["metric"] == "F1 samples"].to_dict("records"),
        "alpha": ALPHA,
        "table2": table2.reset_index().to_dict("records"),
        "table2_criteria": TABLE2_CRITERIA,
        "paper_criteria": [(criterion, PAPER_COUNTERPARTS[criterion]) for criterion in PAPER_CRITERIA],
        "agreement": _agreement(table2),
        "text_versus_maths": [
            (loss_info(loss).abbreviation, note)
            for loss, note in TEXT_VERSUS_MATHS.items()
            if loss in config["training"]["losses"]
        ],
        "per_class": _heat_table(per_class),
        "per_class_ap": _heat_table(per_class_ap),
        "probability": probability.to_dict("records"),
        "calibration": CALIBRATION,
        "lrp_summary": lrp[lrp["class"] == ALL_CLASSES].to_dict("records"),
        "lrp_per_class": int(config["explain"]["per_class"]),
        "zbox": _zbox_summary(bounds),
        "conservation": summarise_conservation(conservation).to_dict("records"),
        "conservation_tolerance": TOLERANCE,
        "guidelines": guidelines(table2, table1_long, pairwise),
        "guideline_rules": [
            (column, "higher" if higher else "lower", meaning) for _, column, higher, _, meaning in RULES
        ],
        "tested_columns": list(TESTED),
        "paper_best": loss_info(paper_best()).abbreviation,
        "losses": [loss_info(loss) for loss in LOSS_IDS if loss in config["training"]["losses"]],
        "paper_losses": [loss_info(loss).abbreviation for loss in PAPER_LOSS_IDS],
        "images": {
            "class_counts": data_uri(inputs.class_counts_figure),
            "f1_curves": data_uri(inputs.f1_curves),
            "f1_time": data_uri(inputs.f1_time),
            "pairwise": data_uri(inputs.pairwise_figure),
            "pr_curves": data_uri(inputs.pr_curves_figure),
            "reliability": data_uri(inputs.reliability_figure),
            "lrp": data_uri(inputs.lrp_heatmaps),
            "lrp_scores": data_uri(inputs.lrp_scores_figure),
        },
        "architectures": architecture_view(config, inputs),
        "landscapes": None
        if inputs.landscape_figure is None
        else {
            "figure": data_uri(inputs.landscape_figure),
            "slices": data_uri(inputs.landscape_slices),
            "measured": MEASURED_CONVEXITY,
            "settings": config["landscape"],
        },
        "git": git_commit(),
        "versions": versions(),
        "composite": [
            f"the input layer(s) (the K-Branch CNN: the first convolution of each branch; a timm backbone: its stem "
            f"on the stacked bands): ZBox, per-band bounds {bounds['source'].iloc[0]}, normalised like the inputs",
            "other convolutions: ZPlus",
            "fully connected layers and the decision head: Epsilon (ε = 1e-6) with the bias's share of each neuron's"
            " relevance spread over its inputs by |x_i w_ij| (EpsilonSpreadBias)",
            "the convolutions' rules leave the biases out (zennit's zero_params): each layer hands on all the"
            " relevance it receives",
            "BatchNorm merged into the preceding layers, model in eval mode; in a residual network each residual sum"
            " splits its relevance in proportion to the two summands",
            "explained: each loss's decision score for the class, a linear head appended to the logits",
        ],
    }


def render(inputs: ReportInputs) -> str:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    environment.filters["pct"] = lambda v: (
        "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.1f}"
    )
    environment.filters["num"] = lambda v, d=1: (
        "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{d}f}"
    )
    environment.filters["cell"] = format_cell  # as in the Markdown tables
    return environment.get_template("report.html.j2").render(**context(inputs))


def build_report(inputs: ReportInputs, out: Path) -> None:
    """Write the report to ``out`` atomically."""
    html = render(inputs)
    with atomic_outputs(Path(out)) as (tmp,):
        tmp.write_text(html, encoding="utf-8")
    log.info("report written to %s (%d kB)", out, len(html) // 1024)
