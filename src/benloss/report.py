"""The final report: one self-contained HTML page built with Jinja2 from the tables and figures of a run."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from jinja2 import Environment, FileSystemLoader, select_autoescape

from benloss.atomic import atomic_outputs
from benloss.guidelines import ALPHA, RULES, TESTED, guidelines, paper_best
from benloss.losses import LOSS_IDS, PAPER_LOSS_IDS, loss_info
from benloss.lrp_scores import ALL_CLASSES
from benloss.paper import CITATION, TEXT_VERSUS_MATHS
from benloss.paper import TABLE2_CRITERIA as PAPER_CRITERIA
from benloss.tables import PAPER_COUNTERPARTS, TABLE2_CRITERIA, agreement_summary, paper_table1

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).parent / "templates"
PACKAGES = ("torch", "zennit", "snakemake", "rasterio", "numpy", "pandas", "matplotlib", "jinja2")


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


def _run_records(results: Path) -> list[dict]:
    records = []
    for loss in LOSS_IDS:
        for path in sorted((results / "models" / loss).glob("seed*/run.json")):
            record = json.loads(path.read_text())
            records.append({**record, "loss": loss_info(loss).abbreviation, "seed": record["config"]["seed"]})
    return records


def _table1_comparison(results: Path, demo: bool) -> list[dict]:
    ours = pd.read_csv(results / "tables" / "table1.csv")
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


def _dataset(results: Path) -> str | None:
    """The dataset and version the encode stage recorded in ``encoded/meta.json``; None where it did not."""
    path = results / "encoded" / "meta.json"
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
            "above_share": bounds["above_10000"].sum() / max(pixels, 1)}  # fmt: skip


def _spreads(long: pd.DataFrame) -> list[dict]:
    """Sample F1 per loss: seed mean ± std beside the test-image interval, and which spread dominates."""
    rows = long[(long["metric"] == "F1") & (long["seeds"] > 1)]
    return rows[["loss", "mean", "std", "ci_low", "ci_high", "test_se", "dominant_spread"]].to_dict("records")


def _agreement(table2: pd.DataFrame) -> list[dict]:
    """Per paper criterion: the measured mark compared and how many losses agree."""
    return agreement_summary(table2).to_dict("records")


def context(results: Path, config_path: Path) -> dict:
    """Everything the template shows, read from the run's files; the template computes nothing."""
    results = Path(results)
    config_text = Path(config_path).read_text()
    config = yaml.safe_load(config_text)
    demo = config["data"]["source"] == "demo"
    summary = json.loads((results / "labels" / "summary.json").read_text())
    table1_long = pd.read_csv(results / "tables" / "table1.csv")
    table2 = pd.read_csv(results / "tables" / "table2.csv", index_col="loss")
    per_class = pd.read_csv(results / "tables" / "per_class_f1.csv", index_col=0)
    pairwise = pd.read_csv(results / "tables" / "pairwise.csv")
    conservation = pd.read_csv(results / "explain" / "conservation.csv")
    archive = Path(summary["archive"])
    if demo and archive.is_file():
        checksum = md5(archive)
    elif config["data"]["source"] == "bigearthnet-v2":
        checksum = config["data"]["v2"]["download"]["s2"]["md5"] + " (verified at download)"
    else:
        checksum = config["data"]["download"]["md5"] + " (verified at download)"
    runs = _run_records(results)
    baselines = [json.loads(p.read_text()) for p in sorted((results / "models").glob("*/seed*/baseline.json"))]
    lrp = pd.read_csv(results / "tables" / "lrp_scores.csv")
    bounds = pd.read_csv(results / "explain" / "zbox_bounds.csv")
    return {
        "title": f"benloss report: run {config['run']}",
        "demo": demo,
        "dataset": _dataset(results),
        "citation": CITATION,
        "config": config,
        "config_text": config_text,
        "summary": summary,
        "checksum": checksum,
        "kept_total": sum(summary["kept"].values()),
        "runs": runs,
        "baseline": baselines[0] if baselines else None,
        "table1": _table1_comparison(results, demo),
        "table1_more": _table1_more(table1_long),
        "spreads": _spreads(table1_long),
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
        "per_class": {
            "losses": list(per_class.columns),
            "rows": [
                {"name": name, "cells": [{"value": v, "colour": _heat_colour(v)} for v in row]}
                for name, row in per_class.iterrows()
            ],
        },
        "lrp_summary": lrp[lrp["class"] == ALL_CLASSES].to_dict("records"),
        "lrp_per_class": int(config["explain"]["per_class"]),
        "zbox": _zbox_summary(bounds),
        "conservation": conservation.groupby("loss", sort=False)["ratio"]
        .agg(["median", "min", "max"])
        .reset_index()
        .to_dict("records"),
        "guidelines": guidelines(table2, table1_long, pairwise),
        "guideline_rules": [
            (column, "higher" if higher else "lower", meaning) for _, column, higher, _, meaning in RULES
        ],
        "tested_columns": list(TESTED),
        "paper_best": loss_info(paper_best()).abbreviation,
        "losses": [loss_info(loss) for loss in LOSS_IDS if loss in config["training"]["losses"]],
        "paper_losses": [loss_info(loss).abbreviation for loss in PAPER_LOSS_IDS],
        "images": {
            "class_counts": data_uri(results / "figures" / "class_counts.png"),
            "f1_curves": data_uri(results / "figures" / "f1_curves.png"),
            "f1_time": data_uri(results / "figures" / "f1_time.png"),
            "pairwise": data_uri(results / "figures" / "pairwise_f1.png"),
            "lrp": data_uri(results / "figures" / "lrp_heatmaps.png"),
            "lrp_scores": data_uri(results / "figures" / "lrp_scores.png"),
        },
        "git": git_commit(),
        "versions": versions(),
        "composite": [
            f"first convolution of each branch (10 m, 20 m, 60 m): ZBox, per-band bounds {bounds['source'].iloc[0]},"
            " normalised like the inputs",
            "other convolutions: ZPlus",
            "fully connected layers: Epsilon (ε = 1e-6)",
            "BatchNorm merged into the preceding layers (SequentialMergeBatchNorm), model in eval mode",
        ],
    }


def render(results: Path, config_path: Path) -> str:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    environment.filters["pct"] = lambda v: (
        "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.1f}"
    )
    environment.filters["num"] = lambda v, d=1: (
        "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{d}f}"
    )
    return environment.get_template("report.html.j2").render(**context(results, config_path))


def build_report(results: Path, config_path: Path, out: Path) -> None:
    """Write the report to ``out`` atomically."""
    html = render(results, config_path)
    with atomic_outputs(Path(out)) as (tmp,):
        tmp.write_text(html, encoding="utf-8")
    log.info("report written to %s (%d kB)", out, len(html) // 1024)
