"""The guidelines that hold for every architecture studied: a loss beats another only where each architecture's
bootstrap (its ``pairwise.csv``) finds it ahead with a Holm-adjusted p below ``ALPHA``. With fewer than
``MIN_SEEDS`` seeds per loss on any architecture no such claim is made, as in ``benloss.report.guidelines``."""

from __future__ import annotations

import pandas as pd

from benloss.architectures import architecture
from benloss.errors import InputError
from benloss.report.guidelines import ALPHA, MIN_SEEDS, comparison, names

ROBUST_COLUMNS = ["metric", "better", "worse", "smallest_difference", "largest_difference", "largest_p_holm"]


def fewest_seeds(pairwise: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Seeds per loss behind each architecture's table (the smallest count it names; 0 for an empty table)."""
    return {arch: int(table["seeds"].min()) if len(table) else 0 for arch, table in pairwise.items()}


def robust_pairs(pairwise: dict[str, pd.DataFrame], alpha: float = ALPHA) -> pd.DataFrame:
    """(metric, better, worse) wherever every architecture's table has the pair with Holm p below ``alpha`` and a
    difference of the same sign, with the range of the differences (% points) and the largest p over
    architectures; no rows where an architecture has fewer than MIN_SEEDS seeds."""
    if not pairwise:
        raise InputError("no architecture's pairwise table given")
    if min(fewest_seeds(pairwise).values()) < MIN_SEEDS:
        return pd.DataFrame(columns=ROBUST_COLUMNS)
    first, *_ = pairwise.values()
    rows = []
    for metric, loss_a, loss_b in first[["metric", "loss_a", "loss_b"]].itertuples(index=False):
        found = [comparison(table, metric, loss_a, loss_b) for table in pairwise.values()]
        if any(row is None or not row["p_holm"] < alpha for row in found):
            continue
        differences = [row["difference"] for row in found]
        if all(d > 0 for d in differences) or all(d < 0 for d in differences):
            better, worse = (loss_a, loss_b) if differences[0] > 0 else (loss_b, loss_a)
            rows.append({"metric": metric, "better": better, "worse": worse,
                         "smallest_difference": min(map(abs, differences)),
                         "largest_difference": max(map(abs, differences)),
                         "largest_p_holm": max(row["p_holm"] for row in found)})  # fmt: skip
    return pd.DataFrame(rows, columns=ROBUST_COLUMNS)


def studied(archs: list[str]) -> str:
    """'every architecture studied (K-Branch CNN, ResNet-18)', or 'the one architecture studied (…)'."""
    listed = ", ".join(architecture(arch).name for arch in archs)
    return f"the one architecture studied ({listed})" if len(archs) == 1 else f"every architecture studied ({listed})"


def across_architectures(pairwise: dict[str, pd.DataFrame], alpha: float = ALPHA) -> tuple[pd.DataFrame, list[str]]:
    """The pairs of ``robust_pairs`` and sentences for the report: per metric, each loss with the losses it beats
    on every architecture, or that none does; with too few seeds, one sentence saying why nothing is claimed."""
    robust = robust_pairs(pairwise, alpha)
    archs = list(pairwise)
    seeds = fewest_seeds(pairwise)
    short = {arch: count for arch, count in seeds.items() if count < MIN_SEEDS}
    if short:
        counts = names([f"{architecture(arch).name} has {count}" for arch, count in short.items()])
        return robust, [
            f"No conclusion about losses is claimed for {studied(archs)}: that needs at least {MIN_SEEDS} seeds per "
            f"loss on each, to know how far seeds of one loss spread, and {counts}."
        ]
    first, *_ = pairwise.values()
    sentences = []
    for metric in first["metric"].drop_duplicates():
        rows = robust[robust["metric"] == metric]
        if rows.empty:
            sentences.append(f"On {metric}, no loss beats another on {studied(archs)} (Holm p < {alpha} with the "
                             "same sign on each).")  # fmt: skip
        for better in rows["better"].drop_duplicates():
            group = rows[rows["better"] == better]
            low, high = group["smallest_difference"].min(), group["largest_difference"].max()
            sentences.append(f"On {studied(archs)}, {better} beats {names(list(group['worse']))} on {metric} "
                             f"(by {low:.1f} to {high:.1f} points, Holm p ≤ {group['largest_p_holm'].max():.2g} on "
                             "each).")  # fmt: skip
    return robust, sentences
