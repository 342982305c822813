"""The multi-label losses of the study, one class per id of ``benloss.facts.loss_catalog``.

The paper's seven (CEL, FL, W-CEL, HAL, HL, RL, SML) come first, in its order; ASL and ZLPR are later
additions compared under the same protocol, marked ``in_paper=False`` in their metadata.

Every loss takes raw scores ``z`` (N, C) and multi-hot targets ``y`` in {0, 1} of the same shape and
returns the per-image loss averaged over the batch. Per-image losses sum over classes as in the
paper's equations, except HAL, which the paper defines as a mean over classes. Each loss also has its
own decision rule, ``predict``, and metadata the report reads.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benloss.errors import InputError
from benloss.evaluation.metrics import calibrate_sample_f1_threshold
from benloss.facts.loss_catalog import LOSS_IDS, LossInfo, loss_info


class MultiLabelLoss(nn.Module):
    """Shared checks and the sigmoid ≥ 0.5 decision rule (z ≥ 0); subclasses define ``per_image``."""

    info: LossInfo

    def __init__(self) -> None:
        super().__init__()
        #: Parameters of the own rule fitted on validation scores (RL's threshold); empty for a fixed rule.
        self.own_rule: dict = {}

    @property
    def shift_free_score(self) -> str | None:
        """The shift-free score it ranks by (``None``: raw scores); see ``LossInfo``."""
        return self.info.shift_free_score

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        z, y = _checked(logits, targets)
        return self.per_image(z, y).mean()

    def per_image(self, z: Tensor, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def ranking_scores(self, logits: Tensor) -> Tensor:
        """The score the loss ranks by, which thresholds and ranking metrics use: raw here, the shift-free score
        where one is named (a per-image offset the loss never learns would scramble a class's ranking)."""
        return logits

    def fit_own_rule(self, scores: Tensor, targets: Tensor) -> dict:
        """Fit the own rule's parameters on validation scores (nothing to fit here); returns ``own_rule``."""
        return self.own_rule

    def set_own_rule(self, rule: dict) -> None:
        """Use own-rule parameters fitted before (``fit_own_rule``, saved with the model)."""
        self.own_rule = dict(rule)

    def predict(self, logits: Tensor, thresholds: Tensor | None = None) -> Tensor:
        """Boolean predictions: the loss's own rule, or ``ranking_scores ≥ thresholds`` per class when given."""
        if thresholds is not None:
            scores = self.ranking_scores(logits)
            return scores >= thresholds.to(scores.device, scores.dtype)
        return self.own_predict(logits)

    def own_predict(self, logits: Tensor) -> Tensor:
        """The loss's own decision rule: σ(z) ≥ 0.5 here."""
        return logits >= 0


def _numpy_targets(targets: Tensor | np.ndarray) -> np.ndarray:
    return (targets.cpu().numpy() if isinstance(targets, Tensor) else np.asarray(targets)).astype(bool)


def _checked(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    if logits.ndim != 2 or logits.shape != targets.shape:
        raise InputError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must both be (N, C)")
    if ((targets != 0) & (targets != 1)).any():
        raise InputError("targets must be multi-hot: every entry 0 or 1")
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    return z, targets.to(z.dtype)


class BinaryCrossEntropy(MultiLabelLoss):
    """CEL: −Σ_c [y log σ(z) + (1 − y) log(1 − σ(z))], via log-sigmoid so no score overflows."""

    info = loss_info("cel")

    def per_image(self, z: Tensor, y: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(z, y, reduction="none").sum(dim=1)


class FocalLoss(MultiLabelLoss):
    """FL: −Σ_c (1 − p_t)^γ log p_t with p_t = σ(z) for positives and 1 − σ(z) for negatives."""

    info = loss_info("fl")

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        if gamma < 0:
            raise InputError(f"focal loss gamma must be ≥ 0, got {gamma}")
        self.gamma = gamma

    def per_image(self, z: Tensor, y: Tensor) -> Tensor:
        signed = torch.where(y > 0, z, -z)
        log_p = F.logsigmoid(signed)
        modulation = torch.exp(self.gamma * F.logsigmoid(-signed)) if self.gamma else 1.0
        return -(modulation * log_p).sum(dim=1)


class WeightedCrossEntropy(MultiLabelLoss):
    """W-CEL: CEL with class c weighted by w_c, on its positive term (default) or on both terms.

    ``weighting="positive"``: −Σ_c [w_c y log σ(z) + (1 − y) log(1 − σ(z))], TensorFlow's
    ``weighted_cross_entropy_with_logits`` with ``pos_weight`` = w. Its optimum is σ(z) = w p / (w p + 1 − p)
    (p = P(y = 1 | x)), i.e. logit(p) + log w: the rule σ(z) ≥ 0.5 fires where p ≥ 1 / (1 + w), so w > 1 moves a
    class towards recall. ``weighting="both"``: both terms times w_c, whose optimum stays σ(z) = p: it only shares
    gradient between classes.

    Weights from the training split (``class_weights``): ``weights="negatives_over_positives"`` (default)
    w_c = (N − n_c) / n_c, negatives over positives among the N training images, ≥ 1 for every class in fewer than
    half of them, so the rule balances each class's positives against its negatives; ``"inverse_frequency_mean1"``
    w_c = (1/n_c) / mean_k(1/n_k), below 1 for the common classes (their rule then needs p ≥ 1 / (1 + w_c) > 0.5).
    """

    info = loss_info("wcel")
    WEIGHTINGS = ("positive", "both")

    def __init__(
        self, class_counts: Tensor | np.ndarray | list[float], n_images: int, weighting: str = "positive",
        weights: str = "negatives_over_positives",
    ) -> None:  # fmt: skip
        super().__init__()
        if weighting not in self.WEIGHTINGS:
            raise InputError(f"W-CEL weighting must be one of {', '.join(self.WEIGHTINGS)}, got {weighting!r}")
        self.weighting = weighting
        self.register_buffer("weights", class_weights(class_counts, n_images, weights))

    def per_image(self, z: Tensor, y: Tensor) -> Tensor:
        weights = self.weights.to(z.dtype)
        if self.weighting == "positive":
            return F.binary_cross_entropy_with_logits(z, y, pos_weight=weights, reduction="none").sum(dim=1)
        return (F.binary_cross_entropy_with_logits(z, y, reduction="none") * weights).sum(dim=1)


#: W-CEL's weighting schemes (``loss_params.wcel.weights``).
WCEL_WEIGHTS = ("negatives_over_positives", "inverse_frequency_mean1")


def class_weights(
    class_counts: Tensor | np.ndarray | list[float], n_images: int, scheme: str = "negatives_over_positives"
) -> Tensor:
    """W-CEL's weights from the training split's per-class counts n_c and its number of images N.

    A class without training images counts as the rarest class that has some (its weight would be infinite).
    """
    counts = torch.as_tensor(np.asarray(class_counts, dtype=np.float64))
    if counts.ndim != 1 or (counts < 0).any() or not (counts > 0).any():
        raise InputError("class counts must be a 1-D vector of non-negative counts, not all zero")
    if not counts.max() <= n_images:
        raise InputError(f"a class has {int(counts.max())} training images, more than the split's {n_images}")
    counts = torch.where(counts > 0, counts, counts[counts > 0].min())
    if scheme == "negatives_over_positives":
        return ((n_images - counts) / counts).float()
    if scheme == "inverse_frequency_mean1":
        inverse = 1.0 / counts
        return (inverse / inverse.mean()).float()
    raise InputError(f"W-CEL weights must be one of {', '.join(WCEL_WEIGHTS)}, got {scheme!r}")


class HammingLoss(MultiLabelLoss):
    """HAL: the soft surrogate (1/C) Σ_c [y(1 − σ(z)) + (1 − y)σ(z)] of the Hamming loss.

    The Hamming loss (1/C) Σ y ⊕ [σ(z) ≥ 0.5] is piecewise constant in z, so training uses its expected
    value under independent Bernoulli predictions, which is this surrogate.
    """

    info = loss_info("hal")

    def per_image(self, z: Tensor, y: Tensor) -> Tensor:
        p = torch.sigmoid(z)
        return (y * (1 - p) + (1 - y) * p).mean(dim=1)


class ModifiedHuber(MultiLabelLoss):
    """HL: with y± = 2y − 1 and m = y± z, Σ_c max(0, 1 − m)² where m ≥ −1, else −4m. Predicts z ≥ 0."""

    info = loss_info("hl")

    def per_image(self, z: Tensor, y: Tensor) -> Tensor:
        margin = (2 * y - 1) * z
        return torch.where(margin >= -1, (1 - margin).clamp(min=0) ** 2, -4 * margin).sum(dim=1)


class RankingLoss(MultiLabelLoss):
    """RL: Σ_{v∉Y} Σ_{u∈Y} max(0, α + z_v − z_u); images without a positive or a negative give 0."""

    info = loss_info("rl")

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def per_image(self, z: Tensor, y: Tensor) -> Tensor:
        # hinge[n, u, v] = max(0, α + z_v − z_u), kept where u is a positive and v a negative.
        hinge = (self.margin + z[:, None, :] - z[:, :, None]).clamp(min=0)
        pairs = y[:, :, None] * (1 - y)[:, None, :]
        return (hinge * pairs).sum(dim=(1, 2))

    def ranking_scores(self, logits: Tensor) -> Tensor:
        return logits - logits.mean(dim=1, keepdim=True)

    def fit_own_rule(self, scores: Tensor, targets: Tensor) -> dict:
        """One threshold on z − mean_c z for every class, fitted for sample F1 (the threshold estimation of
        Li et al. 2017): the loss never learns an image's mean score, so z ≥ 0 would threshold an accident."""
        shift_free = self.ranking_scores(torch.as_tensor(scores)).double().cpu().numpy()
        self.own_rule = {"threshold": calibrate_sample_f1_threshold(shift_free, _numpy_targets(targets))}
        return self.own_rule

    def own_predict(self, logits: Tensor) -> Tensor:
        if "threshold" not in self.own_rule:
            raise InputError("RL's own rule is a threshold fitted on validation scores: call fit_own_rule first")
        return self.ranking_scores(logits) >= self.own_rule["threshold"]


def sparsemax(z: Tensor) -> tuple[Tensor, Tensor]:
    """Sparsemax of each row (Martins & Astudillo 2016) and its threshold τ, shape (N, 1)."""
    sorted_z, _ = torch.sort(z, dim=1, descending=True)
    k = torch.arange(1, z.shape[1] + 1, device=z.device, dtype=z.dtype)
    cumulative = sorted_z.cumsum(dim=1)
    in_support = 1 + k * sorted_z > cumulative
    support_size = in_support.sum(dim=1, keepdim=True)
    tau = (cumulative.gather(1, support_size - 1) - 1) / support_size.to(z.dtype)
    return (z - tau).clamp(min=0), tau


class SparsemaxLoss(MultiLabelLoss):
    """SML: with q = y/‖y‖₁, L = −qᵀz + ½ Σ_{j∈S(z)} (z_j² − τ(z)²) + ½‖q‖²; gradient sparsemax(z) − q.

    Images without a positive label have no target distribution q and give 0. Predicts the support of
    sparsemax(z).
    """

    info = loss_info("sml")

    def per_image(self, z: Tensor, y: Tensor) -> Tensor:
        positives = y.sum(dim=1, keepdim=True)
        q = y / positives.clamp(min=1)
        p, tau = sparsemax(z)
        support = (p > 0).to(z.dtype)
        loss = -(q * z).sum(1) + 0.5 * (support * (z**2 - tau**2)).sum(1) + 0.5 * (q**2).sum(1)
        return torch.where(positives.squeeze(1) > 0, loss, torch.zeros_like(loss))

    def own_predict(self, logits: Tensor) -> Tensor:
        return sparsemax(logits.float())[0] > 0

    def ranking_scores(self, logits: Tensor) -> Tensor:
        z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        return z - sparsemax(z)[1]


class AsymmetricLoss(MultiLabelLoss):
    """ASL: −Σ_c [y (1 − p)^γ+ log p + (1 − y) p_m^γ− log(1 − p_m)], p = σ(z), p_m = max(p − m, 0).

    Negatives whose probability is below the margin m cost nothing, the rest are down-weighted by p_m^γ−.
    1 − p_m = min(σ(−z) + m, 1) is formed from σ(−z) so no score saturates the logarithm.
    """

    info = loss_info("asl")

    def __init__(self, gamma_pos: float = 0.0, gamma_neg: float = 4.0, margin: float = 0.05) -> None:
        super().__init__()
        if gamma_pos < 0 or gamma_neg < 0 or not 0 <= margin < 1:
            raise InputError(f"ASL needs γ+ ≥ 0, γ− ≥ 0 and 0 ≤ m < 1, got {gamma_pos}, {gamma_neg}, {margin}")
        self.gamma_pos, self.gamma_neg, self.margin = gamma_pos, gamma_neg, margin

    def per_image(self, z: Tensor, y: Tensor) -> Tensor:
        positive = F.logsigmoid(z)
        if self.gamma_pos:
            positive = positive * torch.exp(self.gamma_pos * F.logsigmoid(-z))
        if self.margin:
            shifted = (torch.sigmoid(z) - self.margin).clamp(min=0)
            log_complement = torch.log((torch.sigmoid(-z) + self.margin).clamp(max=1))
            # p_m^γ− where p_m > 0 only: the power's gradient at 0 is infinite for γ− < 1.
            kept = shifted > 0
            weight = torch.where(kept, torch.where(kept, shifted, 1.0) ** self.gamma_neg, 0.0)
        else:
            log_complement = F.logsigmoid(-z)
            weight = torch.exp(self.gamma_neg * F.logsigmoid(z))
        return -(y * positive + (1 - y) * weight * log_complement).sum(dim=1)


class ZeroBoundedLogSumExp(MultiLabelLoss):
    """ZLPR: log(1 + Σ_{c∉Y} e^{z_c}) + log(1 + Σ_{c∈Y} e^{−z_c}), each a log-sum-exp with a zero score.

    Pushes every positive score above 0 and every negative below it, so z ≥ 0 is its own threshold.
    """

    info = loss_info("zlpr")

    def per_image(self, z: Tensor, y: Tensor) -> Tensor:
        zero = torch.zeros_like(z[:, :1])
        negatives = torch.cat([zero, z.masked_fill(y > 0, -torch.inf)], dim=1)
        positives = torch.cat([zero, (-z).masked_fill(y == 0, -torch.inf)], dim=1)
        return torch.logsumexp(negatives, dim=1) + torch.logsumexp(positives, dim=1)


LOSSES: dict[str, type[MultiLabelLoss]] = {
    cls.info.id: cls
    for cls in (
        BinaryCrossEntropy, FocalLoss, WeightedCrossEntropy, HammingLoss, ModifiedHuber, RankingLoss, SparsemaxLoss,
        AsymmetricLoss, ZeroBoundedLogSumExp,
    )
}  # fmt: skip
#: Every id of the catalogue has its implementation here, in the catalogue's order.
assert tuple(LOSSES) == LOSS_IDS, "benloss.facts.loss_catalog and the loss classes disagree"


def _loss_class(name: str) -> type[MultiLabelLoss]:
    return LOSSES[loss_info(name).id]


def build_loss(
    name: str, class_counts: Tensor | np.ndarray | list[float] | None = None, n_images: int | None = None, **params
) -> MultiLabelLoss:
    """Build a loss by id; W-CEL needs the training split's per-class counts and number of images."""
    cls = _loss_class(name)
    if cls is WeightedCrossEntropy:
        if class_counts is None or n_images is None:
            raise InputError("W-CEL needs class_counts and n_images (the training split's per-class counts and size)")
        return cls(class_counts, n_images, **params)
    return cls(**params)


def build_rule(name: str, n_classes: int, own_rule: dict | None = None, **params) -> MultiLabelLoss:
    """A loss for its decision rule and scores only (``predict``, ``ranking_scores``), never for training: W-CEL's
    weights do not enter its rule, so they are left at 1. ``own_rule`` is what ``fit_own_rule`` fitted."""
    if _loss_class(name) is WeightedCrossEntropy:
        loss = build_loss(name, class_counts=np.ones(n_classes), n_images=2, **params)
    else:
        loss = build_loss(name, **params)
    loss.set_own_rule(own_rule or {})
    return loss
