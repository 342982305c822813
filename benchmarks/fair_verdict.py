"""Before and after issue 24 on one study: each loss's own rule, its calibrated operating points and its mAP.

    PYTHONPATH=src .venv/bin/python benchmarks/fair_verdict.py --before OLD/results/demo9 --after results/demo9

``--before`` is a run of the code before issue 24 (W-CEL weights (1/n_c)/mean, RL's rule z ≥ 0, per-class-F1
thresholds on raw scores for all but RL and SML), ``--after`` the same study now. Both need ``encoded/`` and
``eval/<arch>/<loss>/seed<seed>/`` (``metrics.json``, ``test_scores.npy``; a run from before the architectures had
``eval/<loss>/seed<seed>/``: move its folders under ``eval/kbranch/``); it compares the K-Branch models. The before
run's mAP is computed here from its test scores, on the score each loss ranks by.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benloss.evaluation.ranking import ranking_summary
from benloss.evaluation.results import by_model
from benloss.facts.loss_catalog import loss_info
from benloss.layout import encoded_array
from benloss.training.losses import build_rule, sparsemax

COLUMNS = ("own F1", "own recall", "no label", "calibrated F1", "calibrated macro F1", "mAP macro")


def before_rule(loss: str, scores: np.ndarray) -> np.ndarray:
    """The own rules before issue 24: the support of sparsemax for SML, z ≥ 0 for every other loss (RL too)."""
    if loss == "sml":
        return (sparsemax(torch.from_numpy(scores).double())[0] > 0).numpy()
    return scores >= 0


def model_row(run: Path, loss: str, seed: int, labels: np.ndarray, after: bool) -> dict:
    folder = run / "eval" / "kbranch" / loss / f"seed{seed}"
    document = json.loads((folder / "metrics.json").read_text())
    scores = np.load(folder / "test_scores.npy").astype(np.float64)
    rule = build_rule(loss, labels.shape[1], document.get("own_rule_parameters", {}))
    own = rule.predict(torch.from_numpy(scores)).numpy() if after else before_rule(loss, scores)
    ranking = rule.ranking_scores(torch.from_numpy(scores)).numpy()
    per_class = document.get("calibrated_per_class", {}).get("f1_macro", np.nan)
    return {"loss": loss_info(loss).abbreviation, "seed": seed, "own F1": document["own_rule"]["f1_samples"],
            "own recall": document["own_rule"]["recall_samples"], "no label": (~own.any(1)).mean(),
            "calibrated F1": document["calibrated"]["f1_samples"], "calibrated macro F1": per_class,
            "mAP macro": ranking_summary(ranking, labels)["map_macro"]}  # fmt: skip


def study(run: Path, after: bool) -> pd.DataFrame:
    """One row per evaluated model of ``run``."""
    labels = np.load(run / "encoded" / encoded_array("test", "labels")).astype(bool)
    models = by_model(sorted(run.glob("eval/kbranch/*/seed*/metrics.json")))
    return pd.DataFrame([model_row(run, loss, seed, labels, after) for loss, seed, _ in models])


def summary(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Per loss and column: 'mean ± std' over seeds (in %; "no label": the share of test images the own rule
    gives no label) before → after."""
    rows = []
    for loss in after["loss"].drop_duplicates():
        row = {"loss": loss, "seeds": int((after["loss"] == loss).sum())}
        for column in COLUMNS:
            cells = []
            for frame in (before, after):
                values = 100 * frame.loc[frame["loss"] == loss, column].astype(float)
                if values.isna().all():
                    cells.append("—")
                else:
                    spread = f" ± {values.std(ddof=1):.1f}" if len(values) > 1 else ""
                    cells.append(f"{values.mean():.1f}{spread}")
            row[column] = f"{cells[0]} → {cells[1]}"
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="results/<run> of the code before issue 24")
    parser.add_argument("--after", type=Path, required=True, help="results/<run> of the same study now")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here as Markdown")
    args = parser.parse_args(argv)
    table = summary(study(args.before, after=False), study(args.after, after=True))
    markdown = table.to_markdown(index=False)
    print(markdown)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown + "\n")
    return table


if __name__ == "__main__":
    main()
