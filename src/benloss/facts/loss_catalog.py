"""The one home of what is known about each loss, torch-free: ids, names, origin, convexity and references.

The paper's seven (CEL, FL, W-CEL, HAL, HL, RL, SML) come first, in its order; ASL and ZLPR are later additions
compared under the same protocol (``in_paper=False``). ``benloss.training.losses`` implements each id here.
"""

from __future__ import annotations

from dataclasses import dataclass

from benloss.errors import InputError


@dataclass(frozen=True)
class LossInfo:
    """What the tables and the report say of a loss."""

    id: str
    abbreviation: str
    display_name: str
    convex: bool
    differentiable: bool
    citation: str
    note: str = ""
    in_paper: bool = True
    #: A loss unchanged when a constant is added to all of an image's scores never learns that offset, so its
    #: thresholds are calibrated on a shift-free score, named here (``None``: raw scores, per class).
    shift_free_score: str | None = None
    #: Whether the loss is built on σ(z) as a probability, so that σ(z)'s calibration (ECE, Brier score) is reported;
    #: only CEL's optimum is σ(z) = P(y = 1 | x) exactly (W-CEL's is shifted by log w_c, HAL's pushed to 0 or 1).
    sigmoid_probability: bool = False
    #: The loss's own decision rule, as the report states it.
    decision_rule: str = "σ(z) ≥ 0.5"


_CATALOG = (
    LossInfo("cel", "CEL", "Cross-entropy", True, True, "Yessou et al. 2020, Eq. 1-2", sigmoid_probability=True),
    LossInfo("fl", "FL", "Focal", False, True, "Lin et al. 2017, ICCV", sigmoid_probability=True),
    LossInfo("wcel", "W-CEL", "Weighted cross-entropy", True, True, "Yessou et al. 2020", sigmoid_probability=True),
    LossInfo(
        "hal", "HAL", "Hamming", False, True, "Yessou et al. 2020",
        "trained on the soft surrogate mean_c[y(1-p) + (1-y)p]; the Hamming loss itself is piecewise constant",
        sigmoid_probability=True,
    ),
    LossInfo("hl", "HL", "Modified Huber", True, True, "Zhang 2004; Yessou et al. 2020, Eq. 5", decision_rule="z ≥ 0"),
    LossInfo(
        "rl", "RL", "Ranking", True, False, "Yessou et al. 2020, Eq. 7",
        shift_free_score="z − mean_c z",
        decision_rule="z − mean_c z ≥ t, one threshold t for all classes fitted for sample F1 on validation",
    ),
    LossInfo(
        "sml", "SML", "Sparsemax", True, True, "Martins & Astudillo 2016; Yessou et al. 2020, Eq. 6",
        shift_free_score="z − τ(z)", decision_rule="the support of sparsemax(z)",
    ),
    LossInfo(
        "asl", "ASL", "Asymmetric", False, True, "Ridnik et al. 2021, ICCV",
        "differentiable for γ− > 0; kinked at p = m when γ− = 0", in_paper=False, sigmoid_probability=True,
    ),
    LossInfo(
        "zlpr", "ZLPR", "Zero-bounded log-sum-exp & pairwise rank-based", True, True,
        "Su et al. 2022, arXiv:2208.02955", "its threshold z = 0 is built into the loss", in_paper=False,
        decision_rule="z ≥ 0",
    ),
)  # fmt: skip
LOSS_INFO: dict[str, LossInfo] = {info.id: info for info in _CATALOG}
#: Every loss id: the paper's seven in its order, then the later additions.
LOSS_IDS: tuple[str, ...] = tuple(LOSS_INFO)
#: The seven losses of the paper, in its order (the default of the demo and paper configs).
PAPER_LOSS_IDS: tuple[str, ...] = tuple(loss for loss, info in LOSS_INFO.items() if info.in_paper)


def loss_info(name: str) -> LossInfo:
    """Metadata of a loss by id."""
    try:
        return LOSS_INFO[name]
    except KeyError:
        raise InputError(f"unknown loss {name!r}; choose from {', '.join(LOSS_IDS)}") from None


def in_catalog_order(losses: list[str] | tuple[str, ...] | set[str]) -> list[str]:
    """``losses`` in ``LOSS_IDS`` order (the paper's seven in its order, then later additions)."""
    present = set(losses)
    return [loss for loss in LOSS_IDS if loss in present]
