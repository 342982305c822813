"""Table 1 (test precision/recall/F1 per loss), the per-class table and Table 2 measured from data."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benloss.atomic import atomic_outputs
from benloss.evaluation.results import histories, losses_present, per_class, test_metrics
from benloss.facts.loss_catalog import loss_info
from benloss.facts.nomenclature import classes
from benloss.facts.paper import TABLE2 as PAPER_TABLE2
from benloss.facts.paper import TABLE2_CRITERIA as PAPER_CRITERIA
from benloss.facts.paper import table1_frame
from benloss.layout import TABLE_FILES

log = logging.getLogger(__name__)

#: Table 1's row of sample F1 at thresholds calibrated for sample F1.
CALIBRATED_F1 = "F1 samples, calibrated for sample F1"
#: Table 1's rows: (label, column of test_metrics). The first three are the paper's.
TABLE1_ROWS: tuple[tuple[str, str], ...] = (
    ("P", "own_precision_samples"),
    ("R", "own_recall_samples"),
    ("F1", "own_f1_samples"),
    ("P micro", "own_precision_micro"),
    ("R micro", "own_recall_micro"),
    ("F1 micro", "own_f1_micro"),
    ("P macro", "own_precision_macro"),
    ("R macro", "own_recall_macro"),
    ("F1 macro", "own_f1_macro"),
    ("F1 samples", "own_f1_samples"),
    (CALIBRATED_F1, "calibrated_f1_samples"),
    ("F1 macro, calibrated per class", "calibrated_per_class_f1_macro"),
    ("mAP macro", "ranking_map_macro"),
    ("mAP micro", "ranking_map_micro"),
    ("AUROC macro", "ranking_auroc_macro"),
)
MARKS = ("H", "M", "L")


def table1(metrics: pd.DataFrame, intervals: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long table: metric, loss (abbreviation), mean and std over seeds (in %), number of seeds.

    With the bootstrap's ``intervals`` (``benloss.evaluation.bootstrap.interval_table``), also the two-level 95 %
    interval ``ci_low``/``ci_high`` of the mean (seeds and test set), the test-set standard error ``test_se`` of one
    model and which spread dominates.
    """
    rows = []
    for label, column in TABLE1_ROWS:
        for loss in losses_present(metrics):
            values = 100 * metrics.loc[metrics["loss"] == loss, column].to_numpy(dtype=float)
            std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
            rows.append({"metric": label, "loss": loss_info(loss).abbreviation, "mean": float(values.mean()),
                         "std": std, "seeds": len(values), "column": column})  # fmt: skip
    long = pd.DataFrame(rows)
    if intervals is None:
        return long.drop(columns="column").assign(ci_low=np.nan, ci_high=np.nan, test_se=np.nan, dominant_spread="")
    keyed = intervals.assign(column=intervals["rule"] + "_" + intervals["metric"])
    found = keyed[["column", "loss", "ci_low", "ci_high", "test_se", "dominant_spread"]]
    merged = long.merge(found, on=["column", "loss"], how="left", validate="many_to_one")
    return merged.drop(columns="column").assign(dominant_spread=merged["dominant_spread"].fillna(""))


def _cell(mean: float, std: float, low: float = np.nan, high: float = np.nan) -> str:
    cell = f"{mean:.1f}" if np.isnan(std) else f"{mean:.1f} ± {std:.1f}"
    return cell if np.isnan(low) else f"{cell} [{low:.1f}, {high:.1f}]"


#: Table 1's last column: per metric, the larger spread (seeds or test set) and for how many losses.
SPREAD_COLUMN = "larger spread"


def dominant_spread(spreads: pd.Series) -> str:
    """'seeds (5 of 7 losses)': the spread larger for most losses ('tie' where as many say each); — with one seed,
    where it is unknown."""
    known = spreads[spreads.isin(["seeds", "test set"])]
    if known.empty:
        return "—"
    counts = known.value_counts()
    if len(counts) == 2 and counts.iloc[0] == counts.iloc[1]:
        return f"tie ({counts.iloc[0]} and {counts.iloc[1]} of {len(spreads)} losses)"
    return f"{counts.index[0]} ({counts.iloc[0]} of {len(spreads)} losses)"


def table1_wide(long: pd.DataFrame) -> pd.DataFrame:
    """Formatted Table 1: rows metrics, columns losses, cells ``mean``, ``mean ± std`` and ``[ci_low, ci_high]``;
    a last column says which spread, seeds or test set, is the larger for most losses."""
    columns = [long[name] for name in ("mean", "std", "ci_low", "ci_high")]
    cells = long.assign(cell=[_cell(*values) for values in zip(*columns, strict=True)])
    wide = cells.pivot(index="metric", columns="loss", values="cell")
    order = [abbreviation for abbreviation in cells["loss"].drop_duplicates()]
    wide = wide.loc[[label for label, _ in TABLE1_ROWS], order]
    wide[SPREAD_COLUMN] = cells.groupby("metric")["dominant_spread"].agg(dominant_spread).loc[wide.index]
    return wide


def paper_table1() -> pd.DataFrame:
    frame = table1_frame()
    frame.columns = [loss_info(loss).abbreviation for loss in frame.columns]
    return frame


def per_class_f1(per_class_frame: pd.DataFrame, column: str = "f1") -> pd.DataFrame:
    """Test F1 (or another per-class column, e.g. ``ap``) per class (rows, official order) and loss (columns),
    mean over seeds."""
    mean = per_class_frame.groupby(["class", "loss"])[column].mean().unstack("loss")
    mean = mean.loc[list(classes()), losses_present(per_class_frame)]
    mean.columns = [loss_info(loss).abbreviation for loss in mean.columns]
    return mean


def probability_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """ECE and Brier score of σ(z) per loss (mean and std over seeds); "not applicable" where σ(z) is no
    probability (HL, RL, SML, ZLPR: their scores are margins, ranks or sparsemax inputs)."""
    rows = []
    for loss in losses_present(metrics):
        info = loss_info(loss)
        row = {"loss": info.abbreviation, "applicable": info.sigmoid_probability}
        for name in ("ece", "brier"):
            column = f"probability_{name}"
            values = metrics.loc[metrics["loss"] == loss, column] if column in metrics else pd.Series(dtype=float)
            values = values.dropna().to_numpy(dtype=float) if info.sigmoid_probability else np.array([])
            row[name] = float(values.mean()) if len(values) else np.nan
            row[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("loss")


def epochs_to_fraction(curve: np.ndarray, fraction: float = 0.9) -> int:
    """First epoch (1-based) whose value reaches ``fraction`` of the final value."""
    target = fraction * curve[-1]
    return int(np.argmax(curve >= target)) + 1


def seconds_to_fraction(curve: np.ndarray, train_seconds: np.ndarray, fraction: float = 0.9) -> float:
    """Training seconds, summed over epochs, until the first epoch whose value reaches ``fraction`` of the final."""
    return float(np.cumsum(train_seconds)[epochs_to_fraction(curve, fraction) - 1])


def marks(values: pd.Series, higher_is_better: bool) -> pd.Series:
    """H/M/L by rank: top, middle and bottom third of the losses; ties share the better mark."""
    ranks = values.rank(ascending=not higher_is_better, method="min") - 1
    third = np.floor(ranks * 3 / len(values)).astype(int).clip(0, 2)
    return third.map(dict(enumerate(MARKS)))


#: Table 2's measured criteria: (column, higher is better, how it is computed).
TABLE2_CRITERIA: tuple[tuple[str, bool, str], ...] = (
    ("test_f1", True, "overall accuracy: sample-averaged test F1 with the loss's own rule"),
    ("test_map", True, "overall accuracy, threshold-free: macro mAP on the score the loss ranks by"),
    ("macro_f1", True, "class imbalance: macro-averaged test F1"),
    ("rare_f1", True, "class imbalance: mean test F1 over the rarest third of the classes by training count"),
    ("zero_grad_fraction", False, "share of training images whose score gradient vanished, mean over epochs"),
    ("epochs_to_90", False, "learning efficiency: first epoch reaching 90 % of the final validation F1"),
    ("f1_auc", True, "learning efficiency: area under the validation F1 curve, per epoch (mean F1)"),
    ("seconds_to_90", False, "learning efficiency: training seconds until 90 % of the final validation F1"),
)
#: The measured mark set beside each of the paper's Table 2 criteria.
PAPER_COUNTERPARTS: dict[str, str] = {
    "overall_accuracy": "test_f1_mark",
    "class_imbalance": "rare_f1_mark",
    "convexity_differentiability": "convexity_differentiability_mark",
    "learning_efficiency": "f1_auc_mark",
}
NO_MARK = "—"


#: The landscapes' measured convexity in Table 2 (as ``landscape_<column>``), with what each means.
MEASURED_CONVEXITY = {
    "convex_share_random": "share of the surface's interior points, along two filter-normalised random directions, "
    "where it is locally convex (finite-difference Hessian positive semi-definite)",
    "convex_share_pca": "the same over the plane of the training trajectory's first two principal directions",
    "eigenvalue_ratio": "|λ_min / λ_max| of the loss's Hessian at the trained weights, from Lanczos on Hessian-vector "
    "products (small: little negative curvature next to the largest, Li et al.'s reading; where λ_min > 0 the "
    "Lanczos steps found no negative curvature, which a few steps can miss)",
    "sharpness": "rise of the training loss at the configured filter-normalised radius, mean over directions and "
    "signs; in each loss's own units, so comparable between models of one loss, not between losses",
}


def table2(
    metrics: pd.DataFrame, history: pd.DataFrame, per_class_frame: pd.DataFrame, counts: pd.DataFrame
) -> pd.DataFrame:
    """Measured numbers and H/M/L marks per loss (rows, LOSS_IDS order); convexity/differentiability from metadata."""
    train_counts = counts.set_index("class")["train"].loc[list(classes())]
    rare = list(train_counts.sort_values(kind="stable").index[: len(classes()) // 3])
    rows = []
    for loss in losses_present(metrics):
        info = loss_info(loss)
        runs = history[history["loss"] == loss]
        ordered = [group.sort_values("epoch") for _, group in runs.groupby("seed")]
        curves = [group["f1_samples"].to_numpy() for group in ordered]
        seconds = [group["train_seconds"].to_numpy() for group in ordered]
        to_90 = [seconds_to_fraction(curve, times) for curve, times in zip(curves, seconds, strict=True)]
        rare_f1 = per_class_frame[(per_class_frame["loss"] == loss) & per_class_frame["class"].isin(rare)]["f1"]
        rows.append(
            {
                "loss": info.abbreviation,
                "test_f1": metrics.loc[metrics["loss"] == loss, "own_f1_samples"].mean(),
                "test_map": metrics.loc[metrics["loss"] == loss, "ranking_map_macro"].mean(),
                "macro_f1": metrics.loc[metrics["loss"] == loss, "own_f1_macro"].mean(),
                "rare_f1": rare_f1.mean(),
                "convex": info.convex,
                "differentiable": info.differentiable,
                "zero_grad_fraction": runs["zero_grad_fraction"].mean(),
                "epochs_to_90": float(np.mean([epochs_to_fraction(c) for c in curves])),
                "f1_auc": float(np.mean([c.mean() for c in curves])),
                "seconds_to_90": float(np.mean(to_90)),
                **paper_marks(loss),
            }
        )
    frame = pd.DataFrame(rows).set_index("loss")
    for column, higher, _ in TABLE2_CRITERIA:
        frame[f"{column}_mark"] = marks(frame[column], higher)
    frame["convexity_mark"] = np.where(frame["convex"], "H", "L")
    frame["differentiability_mark"] = np.where(frame["differentiable"], "H", "L")
    both = frame["convex"].astype(int) + frame["differentiable"].astype(int)
    frame["convexity_differentiability_mark"] = both.map({2: "H", 1: "M", 0: "L"})
    for criterion, measured in PAPER_COUNTERPARTS.items():
        frame[f"agree_{criterion}"] = agreement(frame[f"paper_{criterion}"], frame[measured])
    return frame


def paper_marks(loss: str) -> dict[str, str]:
    """The paper's Table 2 marks of a loss as ``paper_<criterion>``; a loss the paper did not study gets —."""
    marks_of_loss = PAPER_TABLE2.get(loss, (NO_MARK,) * len(PAPER_CRITERIA))
    return {f"paper_{criterion}": mark for criterion, mark in zip(PAPER_CRITERIA, marks_of_loss, strict=True)}


def agreement(paper: pd.Series, measured: pd.Series) -> pd.Series:
    """Per loss: "yes" where the measured mark equals the paper's, "no" where not, — where the paper has none."""
    compared = paper.isin(MARKS)
    return pd.Series(np.where(compared, np.where(paper == measured, "yes", "no"), NO_MARK), index=paper.index)


def agreement_summary(table2_frame: pd.DataFrame) -> pd.DataFrame:
    """Per paper criterion: the measured counterpart, losses compared and how many marks agree."""
    rows = []
    for criterion, measured in PAPER_COUNTERPARTS.items():
        column = table2_frame[f"agree_{criterion}"]
        rows.append({"criterion": criterion, "measured": measured, "compared": int(column.isin(["yes", "no"]).sum()),
                     "agree": int((column == "yes").sum())})  # fmt: skip
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame, title: str, digits: int = 3) -> str:
    header = "| " + " | ".join([frame.index.name or "", *map(str, frame.columns)]) + " |"
    rule = "|" + "---|" * (len(frame.columns) + 1)
    body = [
        "| " + " | ".join([str(index), *(format_cell(v, digits) for v in row)]) + " |"
        for index, row in frame.iterrows()
    ]
    return "\n".join([f"**{title}**", "", header, rule, *body, ""])


def format_cell(value: object, digits: int = 3) -> str:
    """A table cell as text: ``digits`` decimals, or significant digits where those would print a nonzero as 0;
    NaN as a dash."""
    if isinstance(value, float | np.floating) and np.isnan(value):
        return "—"
    if isinstance(value, float | np.floating):
        if value != 0 and abs(value) < 0.5 * 10**-digits:  # a ratio like 1e-5 would print as 0.000
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def write_tables(
    metrics_files: Sequence[Path], per_class_files: Sequence[Path], history_files: Sequence[Path],
    class_counts: Path, outdir: Path, demo: bool = False, intervals: Path | None = None,
    landscape: Path | None = None,
) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Write Table 1 (csv, md, tex), the paper's Table 1, the per-class F1 table and Table 2 (csv, md) from
    the given evaluations (``metrics.json``, ``per_class.csv``) and training histories, one file per model.

    ``intervals`` is the bootstrap's ``intervals.csv``; without it Table 1 has no intervals. ``landscape`` is the
    landscapes' ``tables/landscape.csv``: with it Table 2 also holds the measured convexity beside the definitions'.
    """
    outdir = Path(outdir)
    metrics = test_metrics(metrics_files)
    history = histories(history_files)
    per_class_frame = per_class(per_class_files)
    counts = pd.read_csv(class_counts)
    long = table1(metrics, pd.read_csv(intervals) if intervals is not None else None)
    wide = table1_wide(long)
    wide.index.name = "metric"
    paper = paper_table1()
    per_class_table = per_class_f1(per_class_frame)
    per_class_ap = per_class_f1(per_class_frame, "ap")
    probabilities = probability_table(metrics)
    table2_frame = table2(metrics, history, per_class_frame, counts)
    if landscape is not None:
        measured = pd.read_csv(landscape, index_col="loss")
        table2_frame = table2_frame.join(measured[list(MEASURED_CONVEXITY)].add_prefix("landscape_"))
    label = "DEMO on synthetic data, not BigEarthNet: " if demo else ""
    with atomic_outputs(*(outdir / name for name in TABLE_FILES.values())) as paths:
        t1_csv, t1_md, t1_tex, t1_paper, t2_csv, t2_md, pc_csv, ap_csv, probability_csv = paths
        long.to_csv(t1_csv, index=False)
        paper_block = paper.reindex(columns=wide.columns.drop(SPREAD_COLUMN))  # later additions: "—"
        t1_md.write_text(
            _markdown(
                wide,
                f"{label}Table 1: test metrics in % (mean over seeds ± seed std [95 % interval over "
                "seeds and test set])",
            )
            + "\n"
            + _markdown(paper_block, "Table 1 of the paper (BigEarthNet-19, in %)", digits=1)
        )
        caption = (f"{label}Test precision, recall and F1 in \\% (mean over seeds ± seed std [95 \\% interval "
                   "over seeds and test set]).")  # fmt: skip
        t1_tex.write_text(wide.to_latex(caption=caption, label="tab:table1"))
        paper.to_csv(t1_paper)
        table2_frame.to_csv(t2_csv)
        t2_md.write_text(_markdown(table2_frame, f"{label}Table 2, measured"))
        per_class_table.to_csv(pc_csv)
        per_class_ap.to_csv(ap_csv)
        probabilities.to_csv(probability_csv)
    log.info("tables written to %s", outdir)
    return {"table1": long, "table2": table2_frame, "per_class": per_class_table, "per_class_ap": per_class_ap,
            "probability": probabilities}  # fmt: skip
