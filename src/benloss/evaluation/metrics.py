"""Multi-label metrics, accumulated batch by batch so an epoch never holds its predictions in Python lists.

Conventions, as scikit-learn's: an image's precision, recall or F-score whose denominator is zero (nothing
predicted, no positive, or neither) is 0 (``zero_division=0``), and so are the micro averages of a split with
nothing predicted. A class's precision without predictions, recall without positives and F-score with neither
is undefined, NaN (``zero_division=np.nan``), and the macro averages are means over the classes where the metric
is defined: the same rule in every bootstrap replicate (``benloss.evaluation.bootstrap``), so a resample that draws
none of a rare class's predictions drops that class's precision instead of scoring it 0. A class with positives
but no predictions still has F-score 0 and recall 0.
Ranking metrics follow scikit-learn's tie handling: a label's rank counts every label scored at least as
high; an image with no relevant label scores 1 in LRAP and 0 in ranking loss and coverage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from benloss.errors import InputError

if TYPE_CHECKING:
    from torch import Tensor

AVERAGES = ("samples", "micro", "macro")

#: The one calibration protocol, the same for every loss (``metrics.json``'s ``calibration``).
CALIBRATION = (
    "two calibrators fitted on validation, on the score the loss ranks by (ranking_score): per-class thresholds "
    "maximising each class's F1 (calibrated_per_class: per-class and macro F1), and per-class thresholds "
    "maximising sample F1 by exact coordinate ascent from the best single threshold (calibrated)"
)


def _numpy(array: np.ndarray | Tensor) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor; torch is not imported here, so the report stage stays torch-free
        array = array.detach().float().cpu().numpy() if array.is_floating_point() else array.detach().cpu().numpy()
    return np.asarray(array)


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray, zero_division: float) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, float(zero_division))
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def f_beta(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, beta: float, zero_division: float) -> np.ndarray:
    """F-beta from counts: (1+β²)tp / ((1+β²)tp + β²fn + fp)."""
    b2 = beta**2
    return safe_ratio((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp, zero_division)


def class_scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and F2 from counts (..., C), NaN where undefined."""
    nan = float("nan")
    return {"precision": safe_ratio(tp, tp + fp, nan), "recall": safe_ratio(tp, tp + fn, nan),
            "f1": f_beta(tp, fp, fn, 1.0, nan), "f2": f_beta(tp, fp, fn, 2.0, nan)}  # fmt: skip


def defined_mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over ``axis`` of the defined (non-NaN) values; NaN, without a warning, where none is."""
    values = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(values)
    return safe_ratio(np.where(defined, values, 0.0).sum(axis), defined.sum(axis), float("nan"))


class MultiLabelMetrics:
    """Accumulate predictions, targets and (optionally) scores; ``compute`` gives every metric."""

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes
        self.tp = np.zeros(n_classes, dtype=np.int64)
        self.fp = np.zeros(n_classes, dtype=np.int64)
        self.fn = np.zeros(n_classes, dtype=np.int64)
        self.n = 0
        self.sample_sums = dict.fromkeys(("precision", "recall", "f1", "f2"), 0.0)
        self.hamming_errors = 0
        self.exact = 0
        self.ranked = 0
        self.rank_sums = dict.fromkeys(("ranking_loss", "lrap", "one_error", "coverage"), 0.0)

    def update(
        self, predictions: np.ndarray | Tensor, targets: np.ndarray | Tensor, scores: np.ndarray | Tensor | None = None
    ) -> None:
        """Add a batch: boolean predictions and multi-hot targets (N, C); raw scores (N, C) for ranking metrics."""
        pred = _numpy(predictions).astype(bool)
        true = _numpy(targets).astype(bool)
        if pred.shape != true.shape or pred.ndim != 2 or pred.shape[1] != self.n_classes:
            raise InputError(f"predictions {pred.shape} and targets {true.shape} must be (N, {self.n_classes})")
        tp = pred & true
        self.tp += tp.sum(0)
        self.fp += (pred & ~true).sum(0)
        self.fn += (~pred & true).sum(0)
        row_tp, row_fp, row_fn = tp.sum(1), (pred & ~true).sum(1), (~pred & true).sum(1)
        self.sample_sums["precision"] += safe_ratio(row_tp, row_tp + row_fp, 0.0).sum()
        self.sample_sums["recall"] += safe_ratio(row_tp, row_tp + row_fn, 0.0).sum()
        self.sample_sums["f1"] += f_beta(row_tp, row_fp, row_fn, 1.0, 0.0).sum()
        self.sample_sums["f2"] += f_beta(row_tp, row_fp, row_fn, 2.0, 0.0).sum()
        self.hamming_errors += int((pred != true).sum())
        self.exact += int((pred == true).all(1).sum())
        self.n += len(pred)
        if scores is not None:
            self._update_ranking(_numpy(scores).astype(np.float64), true)

    def _update_ranking(self, scores: np.ndarray, true: np.ndarray) -> None:
        # rank[n, j] = number of labels scored at least as high as label j (1 = top).
        rank = (scores[:, None, :] >= scores[:, :, None]).sum(2)
        n_true = true.sum(1)
        n_false = self.n_classes - n_true
        # Incorrectly ordered pairs: a relevant u and an irrelevant v with score_v ≥ score_u.
        wrong = ((scores[:, None, :] >= scores[:, :, None]) & true[:, :, None] & ~true[:, None, :]).sum((1, 2))
        self.rank_sums["ranking_loss"] += safe_ratio(wrong, n_true * n_false, 0.0).sum()
        # LRAP: for each relevant label, the share of labels ranked at or above it that are relevant.
        true_rank = ((scores[:, None, :] >= scores[:, :, None]) & true[:, None, :]).sum(2)
        precision_at = np.where(true, true_rank / rank, 0.0)
        lrap = safe_ratio(precision_at.sum(1), n_true, 1.0)
        lrap[(n_true == 0) | (n_false == 0)] = 1.0
        self.rank_sums["lrap"] += lrap.sum()
        top = scores.argmax(1)
        self.rank_sums["one_error"] += float((~true[np.arange(len(true)), top]).sum())
        lowest_true = np.where(true, scores, np.inf).min(1)
        coverage = (scores >= lowest_true[:, None]).sum(1)
        self.rank_sums["coverage"] += float(np.where(n_true > 0, coverage, 0).sum())
        self.ranked += len(scores)

    def per_class(self, class_names: list[str] | tuple[str, ...] | None = None) -> pd.DataFrame:
        """Per-class precision, recall, F1 (NaN where undefined) and support (number of positives)."""
        scores = class_scores(self.tp, self.fp, self.fn)
        return pd.DataFrame(
            {**{name: scores[name] for name in ("precision", "recall", "f1")}, "support": self.tp + self.fn},
            index=pd.Index(class_names if class_names is not None else range(self.n_classes), name="class"),
        )

    def compute(self) -> dict[str, float]:
        """Every metric as ``<name>_<average>`` (precision, recall, f1, f2) plus the global ones."""
        if self.n == 0:
            raise InputError("no samples were added")
        tp, fp, fn = self.tp.sum(), self.fp.sum(), self.fn.sum()
        result = {f"{name}_samples": value / self.n for name, value in self.sample_sums.items()}
        result |= {
            "precision_micro": float(safe_ratio(tp, tp + fp, 0.0)),
            "recall_micro": float(safe_ratio(tp, tp + fn, 0.0)),
            "f1_micro": float(f_beta(tp, fp, fn, 1.0, 0.0)),
            "f2_micro": float(f_beta(tp, fp, fn, 2.0, 0.0)),
        }
        per_class = class_scores(self.tp, self.fp, self.fn)
        result |= {f"{name}_macro": float(defined_mean(values)) for name, values in per_class.items()}
        result["hamming_loss"] = self.hamming_errors / (self.n * self.n_classes)
        result["subset_accuracy"] = self.exact / self.n
        if self.ranked:
            result |= {name: value / self.ranked for name, value in self.rank_sums.items()}
        return {key: float(value) for key, value in result.items()}


def calibrate_thresholds(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-class thresholds on the scores that maximise each class's F1 (predict score ≥ threshold).

    Candidate thresholds are the observed scores; ties keep the highest threshold. A class without a
    positive gets +inf (never predicted).
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    thresholds = np.full(scores.shape[1], np.inf)
    for c in range(scores.shape[1]):
        positives = targets[:, c].sum()
        if positives == 0:
            continue
        order = np.argsort(-scores[:, c], kind="stable")
        ranked_scores = scores[order, c]
        tp = np.cumsum(targets[order, c])
        predicted = np.arange(1, len(order) + 1)
        # Only cut where the next score is lower, so ties fall on the same side.
        last_of_tie = np.r_[ranked_scores[1:] < ranked_scores[:-1], True]
        f1 = np.where(last_of_tie, 2 * tp / (predicted + positives), -1.0)
        thresholds[c] = ranked_scores[int(np.argmax(f1))]
    return thresholds


def calibrate_sample_f1_threshold(scores: np.ndarray, targets: np.ndarray) -> float:
    """The one threshold for every class that maximises sample F1 of ``score ≥ threshold``.

    Candidates are the observed scores and +inf (predict nothing); ties keep the highest threshold.
    Lowering the threshold past a score changes that image's F1 only, by a step known from the image's
    own ranking, so one sorted sweep over all N·C scores gives sample F1 at every candidate.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    if scores.shape != targets.shape or scores.ndim != 2 or scores.size == 0:
        raise InputError(f"scores {scores.shape} and targets {targets.shape} must both be (N, C) with N, C ≥ 1")
    positives = targets.sum(1, keepdims=True)
    # Image i's F1 with its top k scores predicted, j of them true: 2j / (k + positives_i); 0 without positives.
    row_order = np.argsort(-scores, axis=1, kind="stable")
    true_so_far = np.cumsum(np.take_along_axis(targets, row_order, 1), axis=1)
    k = np.arange(1, scores.shape[1] + 1)
    f1 = safe_ratio(2 * true_so_far, np.where(positives > 0, k + positives, 0), 0.0)
    steps = np.empty_like(f1)
    np.put_along_axis(steps, row_order, np.diff(f1, axis=1, prepend=0.0), 1)
    order = np.argsort(-scores, axis=None, kind="stable")
    ranked_scores = scores.flat[order]
    f1_sum = np.cumsum(steps.flat[order])
    last_of_tie = np.r_[ranked_scores[1:] < ranked_scores[:-1], True]
    f1_sum[~last_of_tie] = -1.0
    best = int(np.argmax(f1_sum))
    return float(ranked_scores[best]) if f1_sum[best] > 0 else float("inf")


def _image_f1(tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Per-image F1 from counts: 2 tp / (predicted + positives), 0 for an image without positives."""
    return safe_ratio(2 * tp, np.where(positives > 0, predicted + positives, 0), 0.0)


def calibrate_sample_f1_thresholds(scores: np.ndarray, targets: np.ndarray, max_rounds: int = 20) -> np.ndarray:
    """Per-class thresholds that maximise sample F1 of ``score ≥ threshold``, by exact coordinate ascent.

    Starts from the best single threshold (``calibrate_sample_f1_threshold``); each step sets one class's
    threshold to the best of its candidates (its observed scores and +inf) with the others fixed, which a
    sorted sweep of that class gives exactly. Sample F1 never decreases; rounds stop when no class improves.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    thresholds = np.full(scores.shape[1], calibrate_sample_f1_threshold(scores, targets))
    positives = targets.sum(1)
    for _ in range(max_rounds):
        improved = False
        for c in range(scores.shape[1]):
            others = scores >= thresholds
            others[:, c] = False
            tp, predicted = (others & targets).sum(1), others.sum(1)
            gain = _image_f1(tp + targets[:, c], predicted + 1, positives) - _image_f1(tp, predicted, positives)
            order = np.argsort(-scores[:, c], kind="stable")
            ranked = scores[order, c]
            gains = np.cumsum(gain[order])
            gains[~np.r_[ranked[1:] < ranked[:-1], True]] = -np.inf  # cut only between distinct scores
            current = gain[scores[:, c] >= thresholds[c]].sum()
            best = int(np.argmax(gains))
            if max(gains[best], 0.0) > current + 1e-12:
                thresholds[c] = ranked[best] if gains[best] > 0 else np.inf
                improved = True
        if not improved:
            break
    return thresholds
