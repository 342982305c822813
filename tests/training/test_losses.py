"""The nine losses (the paper's seven, ASL and ZLPR) against independent references."""

import inspect
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from benloss.facts.loss_catalog import LOSS_IDS, PAPER_LOSS_IDS, loss_info
from benloss.training.losses import LOSSES, build_loss, class_weights, sparsemax

from ..support import ROOT

COUNTS = [100.0, 10.0, 1.0, 50.0, 0.0, 7.0, 3.0]
N_IMAGES = 160  # training images behind COUNTS


def make(name, c=7, **params):
    if name == "wcel":
        return build_loss(name, class_counts=(COUNTS * 2)[:c], n_images=N_IMAGES, **params)
    return build_loss(name, **params)


def random_batch(seed, n=9, c=7, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=dtype) * 3
    y = (torch.rand(n, c, generator=g) < 0.35).to(dtype)
    y[0] = 0  # no positives
    y[1] = 1  # all positives
    return z, y


@pytest.mark.parametrize("seed", range(3))
def test_cel_equals_torch_bce_summed_over_classes(seed):
    z, y = random_batch(seed)
    expected = F.binary_cross_entropy_with_logits(z, y, reduction="sum") / len(z)
    torch.testing.assert_close(make("cel")(z, y), expected)


def test_cel_is_finite_for_huge_scores():
    z = torch.tensor([[1000.0, -1000.0], [-1000.0, 1000.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    loss = make("cel", c=2)(z, y)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(1000.0)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 3.0])
def test_focal_matches_direct_formula(gamma):
    z, y = random_batch(1)
    p = torch.sigmoid(z)
    p_t = torch.where(y > 0, p, 1 - p)
    expected = (-((1 - p_t) ** gamma) * torch.log(p_t)).sum(1).mean()
    torch.testing.assert_close(make("fl", gamma=gamma)(z, y), expected)


def test_focal_with_gamma_zero_is_cel():
    z, y = random_batch(2)
    torch.testing.assert_close(make("fl", gamma=0.0)(z, y), make("cel")(z, y), rtol=0, atol=0)


def test_wcel_weights_are_negatives_over_positives_by_default():
    weights = class_weights(COUNTS, N_IMAGES).double()
    # By hand: (160 − n) / n, a zero count counting as the rarest class that has some (n = 1).
    expected = torch.tensor([60 / 100, 150 / 10, 159 / 1, 110 / 50, 159 / 1, 153 / 7, 157 / 3], dtype=torch.float64)
    torch.testing.assert_close(weights, expected, rtol=1e-6, atol=0)
    assert (weights[1:] >= 1).all() and weights[0] < 1  # only the class in more than half the images is below 1


def test_wcel_weights_before_issue_24_are_inverse_frequency_with_mean_one():
    weights = class_weights(COUNTS, N_IMAGES, "inverse_frequency_mean1").double()
    inverse = 1 / torch.tensor([100, 10, 1, 50, 1, 7, 3], dtype=torch.float64)  # a zero count counts as the rarest
    torch.testing.assert_close(weights, inverse / inverse.mean(), rtol=1e-6, atol=0)
    assert weights.mean().item() == pytest.approx(1.0)
    scheme = make("wcel", weights="inverse_frequency_mean1").weights.double()
    torch.testing.assert_close(scheme, weights)


def test_wcel_weights_from_a_label_matrix_by_hand():
    labels = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 0], [1, 0, 0]])  # counts 3, 1, 1 of 4 images
    weights = class_weights(labels.sum(0), len(labels)).double().numpy()
    np.testing.assert_allclose(weights, [1 / 3, 3.0, 3.0], rtol=1e-6)


def test_wcel_unknown_weights_and_impossible_counts_are_errors():
    with pytest.raises(ValueError, match="negatives_over_positives, inverse_frequency_mean1"):
        class_weights(COUNTS, N_IMAGES, "sqrt")
    with pytest.raises(ValueError, match="more than the split's 50"):
        class_weights(COUNTS, 50)


def tensorflow_weighted_cross_entropy(z: np.ndarray, y: np.ndarray, pos_weight: np.ndarray) -> np.ndarray:
    """TF's weighted_cross_entropy_with_logits, its documented stable form, in float64:
    (1 − y) z + (1 + (q − 1) y) (log(1 + exp(−|z|)) + max(−z, 0))."""
    log_weight = 1 + (pos_weight - 1) * y
    return (1 - y) * z + log_weight * (np.log1p(np.exp(-np.abs(z))) + np.maximum(-z, 0))


def test_wcel_positive_weighting_is_tensorflows_weighted_cross_entropy():
    z, y = random_batch(3)
    weights = class_weights(COUNTS, N_IMAGES).double().numpy()
    expected = tensorflow_weighted_cross_entropy(z.numpy(), y.numpy(), weights).sum(1).mean()
    assert make("wcel")(z, y).item() == pytest.approx(expected, rel=1e-12)
    assert make("wcel", weighting="positive")(z, y).item() == pytest.approx(expected, rel=1e-12)


def test_wcel_positive_weighting_by_hand():
    z = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    loss = build_loss("wcel", class_counts=[1.0, 3.0], n_images=4, weighting="positive")  # weights 3 and 1/3
    p = 1 / (1 + np.exp(-np.array([0.3, -1.2])))
    assert loss(z, y).item() == pytest.approx(-3 * np.log(p[0]) - np.log(1 - p[1]), rel=1e-12)


def test_wcel_positive_weighting_moves_the_optimum_to_w_p_over_w_p_plus_1_minus_p():
    # Expected loss of a class with P(y = 1) = p at score z: its minimiser is σ(z) = wp / (wp + 1 − p).
    p, counts = 0.2, [4.0, 1.0]  # of 10 training images: class weights 1.5 and 9
    z = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    loss = build_loss("wcel", class_counts=counts, n_images=10, weighting="positive")
    optimiser = torch.optim.LBFGS([z], max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14)

    def expected_loss():
        optimiser.zero_grad()
        value = p * loss(z, torch.ones(1, 2, dtype=torch.float64)) + (1 - p) * loss(z, torch.zeros(1, 2).double())
        value.backward()
        return value

    optimiser.step(expected_loss)
    w = class_weights(counts, 10).double()
    torch.testing.assert_close(torch.sigmoid(z.detach())[0], w * p / (w * p + 1 - p), rtol=1e-6, atol=0)


def test_wcel_both_weighting_weights_both_terms():
    z, y = random_batch(3)
    weights = class_weights(COUNTS, N_IMAGES).double()
    expected = (F.binary_cross_entropy_with_logits(z, y, reduction="none") * weights).sum(1).mean()
    torch.testing.assert_close(make("wcel", weighting="both")(z, y), expected)


def test_wcel_unknown_weighting_names_the_choices():
    with pytest.raises(ValueError, match="positive, both"):
        make("wcel", weighting="negative")


def test_wcel_without_counts_is_an_error():
    with pytest.raises(ValueError, match="class_counts and n_images"):
        build_loss("wcel")


def test_hal_hand_computed():
    z = torch.tensor([[0.0, 2.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    s = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    expected = ((1 - s(0.0)) + s(2.0) + s(-1.0)) / 3
    assert make("hal", c=3)(z, y).item() == pytest.approx(expected)


def sklearn_modified_huber(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """scikit-learn's ModifiedHuber (sklearn.linear_model._sgd_fast), per element."""
    from sklearn.linear_model._sgd_fast import ModifiedHuber

    loss = ModifiedHuber()
    return np.array(
        [
            [loss.py_loss(float(p), float(t)) for p, t in zip(row_z, row_y, strict=False)]
            for row_z, row_y in zip(z, y, strict=False)
        ]
    )


def test_hl_matches_sklearn_modified_huber():
    z, y = random_batch(4)
    expected = sklearn_modified_huber(z.numpy(), 2 * y.numpy() - 1).sum(1).mean()
    assert make("hl")(z, y).item() == pytest.approx(expected)


def test_rl_matches_multilabel_margin_loss():
    z, y = random_batch(5)
    c = z.shape[1]
    # MultiLabelMarginLoss takes positive class indices padded with -1 and divides by C.
    target = torch.full(z.shape, -1, dtype=torch.long)
    for i, row in enumerate(y):
        idx = torch.nonzero(row).flatten()
        target[i, : len(idx)] = idx
    reference = F.multilabel_margin_loss(z, target, reduction="none") * c
    reference[y.sum(1) == c] = 0  # no negatives: no pairs
    torch.testing.assert_close(make("rl")(z, y), reference.mean())


def brute_force_sparsemax_loss(z: np.ndarray, y: np.ndarray) -> float:
    """Minimise over every support set: sparsemax is the projection onto the simplex."""
    q = y / y.sum()
    best_p, best_distance = None, np.inf
    for k in range(1, len(z) + 1):
        for support in itertools.combinations(range(len(z)), k):
            s = list(support)
            tau = (z[s].sum() - 1) / k
            p = np.zeros_like(z)
            p[s] = z[s] - tau
            if (p[s] >= 0).all() and np.sum((p - z) ** 2) < best_distance:
                best_p, best_distance = p, np.sum((p - z) ** 2)
    tau = (z[best_p > 0].sum() - 1) / (best_p > 0).sum()
    support = best_p > 0
    return -q @ z + 0.5 * np.sum(z[support] ** 2 - tau**2) + 0.5 * q @ q, best_p


@pytest.mark.parametrize("seed", range(4))
def test_sml_matches_brute_force_and_its_gradient_is_sparsemax_minus_q(seed):
    z, y = random_batch(seed, n=6, c=6)
    y[y.sum(1) == 0, 2] = 1  # every row needs a positive for q
    z.requires_grad_(True)
    loss = make("sml", c=6)(z, y)
    losses, projections = zip(
        *(brute_force_sparsemax_loss(zi, yi) for zi, yi in zip(z.detach().numpy(), y.numpy(), strict=False)),
        strict=False,
    )
    assert loss.item() == pytest.approx(np.mean(losses))
    np.testing.assert_allclose(sparsemax(z.detach())[0].numpy(), np.stack(projections), atol=1e-12)
    (grad,) = torch.autograd.grad(loss, z)
    q = y / y.sum(1, keepdim=True)
    torch.testing.assert_close(grad, (sparsemax(z.detach())[0] - q) / len(z))


@pytest.mark.parametrize("name", [n for n in LOSS_IDS if n != "rl"])
def test_gradcheck(name):
    z, y = random_batch(7, n=4, c=5)
    z = z.detach().requires_grad_(True)
    loss = make(name, c=5)
    assert torch.autograd.gradcheck(lambda x: loss(x, y), (z,))


def test_gradcheck_rl_away_from_hinges():
    z = torch.tensor([[3.0, 0.2, -4.0], [0.0, 5.0, 1.7]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: make("rl", c=3)(x, y), (z,))


@pytest.mark.parametrize("name", LOSS_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_autocast(name, dtype):
    z, y = random_batch(8, dtype=dtype)
    loss = make(name)
    value = loss(z, y)
    assert value.dtype == dtype and torch.isfinite(value)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(loss(z.to(torch.bfloat16), y))


@pytest.mark.parametrize("name", LOSS_IDS)
def test_bad_inputs_are_rejected(name):
    loss = make(name)
    with pytest.raises(ValueError, match="must both be"):
        loss(torch.zeros(2, 7), torch.zeros(2, 6))
    with pytest.raises(ValueError, match="multi-hot"):
        loss(torch.zeros(2, 7), torch.full((2, 7), 0.5))


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match="cel, fl"):
        build_loss("mse")


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(2, 8),
    st.integers(0, 2**31 - 1),
    st.floats(0.1, 50),
)
def test_losses_are_finite_and_non_negative(n, c, seed, scale):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    y = (torch.rand(n, c, generator=g) < 0.5).double()
    for name in LOSS_IDS:
        value = make(name, c=c).forward(z, y)
        assert torch.isfinite(value) and value >= -1e-9, name


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 8), st.integers(0, 2**31 - 1))
def test_perfect_confident_prediction_costs_nothing(c, seed):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(3, c, generator=g) < 0.5).double()
    y[:, 0] = 1  # sparsemax needs a positive
    z = torch.where(y > 0, 40.0, -40.0).double()
    for name in ("cel", "fl", "wcel", "hl", "rl", "sml", "asl", "zlpr"):
        value = make(name, c=c).forward(z, y)
        assert value.item() == pytest.approx(0.0, abs=1e-9), name


@pytest.mark.parametrize("name", LOSS_IDS)
def test_predict_rules(name):
    z = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    loss = make(name, c=4)
    if name == "rl":  # its own rule is a threshold on z − mean_c z fitted on validation scores
        with pytest.raises(ValueError, match="fit_own_rule"):
            loss.predict(z)
        loss.set_own_rule({"threshold": 0.5})  # z − mean_c z = (2.375, −0.625, 0.875, −2.625)
    prediction = loss.predict(z)
    if name == "sml":
        np.testing.assert_array_equal(prediction.numpy(), sparsemax(z)[0].numpy() > 0)
        assert prediction.tolist() == [[True, False, False, False]]
    else:
        assert prediction.tolist() == [[True, False, True, False]]
    thresholds = torch.tensor([1.0, -2.0, 1.0, 0.0])
    calibrated = make(name, c=4).ranking_scores(z)
    if name == "rl":
        torch.testing.assert_close(calibrated, z - z.mean())  # mean −0.375
    elif name == "sml":
        torch.testing.assert_close(calibrated, z - 1.0)  # τ = 1: only 2.0 lies above it, sparsemax (1, 0, 0, 0)
    else:
        torch.testing.assert_close(calibrated, z)
    assert make(name, c=4).predict(z, thresholds).tolist() == [[True, True, False, False]]


def brute_force_best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The highest of the thresholds (observed scores and +inf) with the best sample F1 of scores ≥ threshold."""
    best, best_f1 = np.inf, 0.0
    for threshold in sorted(set(scores.ravel().tolist()), reverse=True):
        predicted = scores >= threshold
        tp, pp, pos = (predicted & labels).sum(1), predicted.sum(1), labels.sum(1)
        f1 = np.where(pp + pos > 0, 2 * tp / np.maximum(pp + pos, 1), 0.0).mean()
        if f1 > best_f1 + 1e-12:
            best, best_f1 = threshold, f1
    return best


def test_rl_own_rule_is_the_best_sample_f1_threshold_on_the_shift_free_score():
    z, y = random_batch(13, n=40, c=6)
    loss = make("rl")
    threshold = loss.fit_own_rule(z, y)["threshold"]
    shift_free = (z - z.mean(1, keepdim=True)).numpy()
    assert threshold == pytest.approx(brute_force_best_threshold(shift_free, y.numpy().astype(bool)), abs=1e-12)
    torch.testing.assert_close(loss.predict(z), torch.from_numpy(shift_free >= threshold))


def test_rl_own_rule_does_not_move_with_the_output_bias():
    """A bias added to every score (the initialisation's offset, never learnt by RL) changes neither the fitted
    threshold nor a prediction; nor does a different constant per image."""
    z, y = random_batch(14, n=40, c=6)
    reference = make("rl")
    threshold = reference.fit_own_rule(z, y)["threshold"]
    for shift in (torch.full((40, 1), -0.43, dtype=z.dtype), torch.randint(-5, 6, (40, 1)).to(z.dtype)):
        moved = make("rl")
        assert moved.fit_own_rule(z + shift, y)["threshold"] == pytest.approx(threshold, abs=1e-9)
        torch.testing.assert_close(moved.predict(z + shift), reference.predict(z))


@pytest.mark.parametrize("name", ["rl", "sml"])
def test_shift_invariant_losses_and_their_calibration_scores_ignore_a_per_image_constant(name):
    z, y = random_batch(11)
    y[0, 0] = 1  # SML needs a positive
    shift = torch.randn(len(z), 1, dtype=z.dtype) * 10
    loss = make(name)
    torch.testing.assert_close(loss(z + shift, y), loss(z, y))
    torch.testing.assert_close(loss.ranking_scores(z + shift), loss.ranking_scores(z))
    assert loss.shift_free_score is not None


@pytest.mark.parametrize("name", [n for n in LOSS_IDS if n not in ("rl", "sml")])
def test_other_losses_change_with_a_per_image_constant_and_calibrate_raw_scores(name):
    z, y = random_batch(12)
    loss = make(name)
    assert not torch.allclose(loss(z + 1.5, y), loss(z, y))
    assert loss.shift_free_score is None


def test_metadata():
    abbreviations = ["CEL", "FL", "W-CEL", "HAL", "HL", "RL", "SML", "ASL", "ZLPR"]
    assert [loss_info(n).abbreviation for n in LOSS_IDS] == abbreviations
    assert loss_info("rl").differentiable is False
    assert PAPER_LOSS_IDS == ("cel", "fl", "wcel", "hal", "hl", "rl", "sml")
    assert [n for n in LOSS_IDS if not loss_info(n).in_paper] == ["asl", "zlpr"]
    assert "Ridnik" in loss_info("asl").citation and "Su" in loss_info("zlpr").citation


def brute_force_asl(z: np.ndarray, y: np.ndarray, gamma_pos: float, gamma_neg: float, margin: float) -> float:
    """Ridnik et al.'s formula term by term in float64, averaged over images."""
    total = 0.0
    for row_z, row_y in zip(z, y, strict=True):
        for score, label in zip(row_z, row_y, strict=True):
            p = 1 / (1 + math.exp(-score))
            if label:
                total -= (1 - p) ** gamma_pos * math.log(p)
            else:
                shifted = max(p - margin, 0.0)
                total -= shifted**gamma_neg * math.log(1 - shifted)
    return total / len(z)


@pytest.mark.parametrize(
    ("gamma_pos", "gamma_neg", "margin"), [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (0.0, 2.0, 0.0), (2.0, 0.5, 0.2)]
)
@pytest.mark.parametrize("seed", range(2))
def test_asl_matches_brute_force(seed, gamma_pos, gamma_neg, margin):
    z, y = random_batch(seed)
    expected = brute_force_asl(z.numpy(), y.numpy(), gamma_pos, gamma_neg, margin)
    value = make("asl", gamma_pos=gamma_pos, gamma_neg=gamma_neg, margin=margin)(z, y)
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_asl_defaults_are_the_issues():
    loss = make("asl")
    assert (loss.gamma_pos, loss.gamma_neg, loss.margin) == (0.0, 4.0, 0.05)


def test_asl_without_focusing_or_margin_is_cel():
    z, y = random_batch(2)
    torch.testing.assert_close(make("asl", gamma_pos=0.0, gamma_neg=0.0, margin=0.0)(z, y), make("cel")(z, y))


def test_asl_ignores_negatives_below_the_margin():
    z = torch.tensor([[-3.0, 2.0]], dtype=torch.float64)  # σ(−3) ≈ 0.047 < 0.05
    y = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert make("asl", c=2)(z, y).item() == pytest.approx(-math.log(1 / (1 + math.exp(-2.0))))


def test_asl_rejects_bad_parameters():
    with pytest.raises(ValueError, match="ASL"):
        build_loss("asl", margin=1.0)


def brute_force_zlpr(z: np.ndarray, y: np.ndarray) -> float:
    """Su et al.'s formula with explicit sums over the negative and positive classes, averaged over images."""
    total = 0.0
    for row_z, row_y in zip(z, y, strict=True):
        negatives = sum(math.exp(s) for s, label in zip(row_z, row_y, strict=True) if not label)
        positives = sum(math.exp(-s) for s, label in zip(row_z, row_y, strict=True) if label)
        total += math.log(1 + negatives) + math.log(1 + positives)
    return total / len(z)


@pytest.mark.parametrize("seed", range(3))
def test_zlpr_matches_brute_force(seed):
    z, y = random_batch(seed)
    assert make("zlpr")(z, y).item() == pytest.approx(brute_force_zlpr(z.numpy(), y.numpy()), rel=1e-12)


def test_zlpr_with_one_class_is_cel():
    z, y = random_batch(3, c=1)
    torch.testing.assert_close(make("zlpr", c=1)(z, y), make("cel", c=1)(z, y))


@pytest.mark.parametrize(("gamma_pos", "gamma_neg", "margin"), [(1.0, 4.0, 0.05), (2.0, 0.5, 0.2), (0.0, 3.0, 0.0)])
def test_gradcheck_asl_parameters(gamma_pos, gamma_neg, margin):
    z, y = random_batch(9, n=4, c=5)
    z = z.detach().requires_grad_(True)
    loss = make("asl", gamma_pos=gamma_pos, gamma_neg=gamma_neg, margin=margin)
    assert torch.autograd.gradcheck(lambda x: loss(x, y), (z,))


@pytest.mark.parametrize("name", LOSS_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_value_and_gradient_are_finite_for_scores_of_1000(name, dtype):
    z = torch.tensor([[1000.0, -1000.0, 1000.0, -1000.0], [-1000.0, 1000.0, 0.0, 1000.0]], dtype=dtype)
    y = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]], dtype=dtype)
    z.requires_grad_(True)
    value = make(name, c=4)(z, y)
    (grad,) = torch.autograd.grad(value, z)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_schema_lists_every_loss_and_its_parameter_defaults():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    training = schema["properties"]["training"]["properties"]["losses"]
    assert tuple(training["items"]["enum"]) == LOSS_IDS
    assert tuple(training["default"]) == PAPER_LOSS_IDS
    for loss, spec in schema["properties"]["loss_params"]["properties"].items():
        signature = inspect.signature(LOSSES[loss].__init__).parameters
        assert {k: v["default"] for k, v in spec["properties"].items()} == {
            k: signature[k].default for k in spec["properties"]
        }, loss
