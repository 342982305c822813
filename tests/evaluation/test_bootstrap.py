"""The paired block bootstrap against a direct loop, the seed level, its coverage on simulated data, Holm by hand,
and the mean interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn import metrics as skm

from benloss.evaluation.bootstrap import (
    METRICS,
    PAIRWISE_METRICS,
    bootstrap_mean_ci,
    bootstrap_metrics,
    bootstrap_p_value,
    holm,
    interval_table,
    pairwise_table,
    percentile_interval,
    rare_classes,
    replicate_indices,
    seed_draws,
    two_level,
)
from benloss.evaluation.comparison import write_bootstrap
from benloss.evaluation.evaluate import evaluate_scores
from benloss.facts.nomenclature import classes
from benloss.training.losses import build_rule


def simulated(rng: np.random.Generator, n: int, n_classes: int, accuracies: list[float]) -> tuple[list, np.ndarray]:
    """Labels and one prediction per accuracy: each entry is right with that probability."""
    labels = rng.random((n, n_classes)) < 0.3
    predictions = [np.where(rng.random((n, n_classes)) < a, labels, ~labels) for a in accuracies]
    return predictions, labels


def sklearn_metrics(pred: np.ndarray, true: np.ndarray, rare: list[int]) -> list[float]:
    """METRICS by scikit-learn, in the same order: images without predictions or positives score 0, classes
    without them are left out of the macro averages (``zero_division=np.nan``)."""
    values = []
    for average, zero_division in (("samples", 0), ("micro", 0), ("macro", np.nan)):
        values += [
            skm.precision_score(true, pred, average=average, zero_division=zero_division),
            skm.recall_score(true, pred, average=average, zero_division=zero_division),
            skm.f1_score(true, pred, average=average, zero_division=zero_division),
        ]
    rare_f1 = skm.f1_score(true, pred, average=None, zero_division=np.nan)[rare]
    values.append(np.nanmean(rare_f1) if not np.isnan(rare_f1).all() else np.nan)
    return values


def with_sparse_classes(predictions: list[np.ndarray], labels: np.ndarray) -> None:
    """Make macro averages hit every undefined case: class 1 is predicted for two images only, class 3 never, and
    class 4 has two positives; images 0 to 2 have no label (zero division in the sample averages)."""
    labels[:3] = False
    labels[:, 4] = False
    labels[[5, 17], 4] = True
    for pred in predictions:
        pred[:, 1] = False
        pred[[4, 9], 1] = True
        pred[:, 3] = False


@pytest.mark.parametrize("spatial", [False, True])
def test_replicates_match_a_direct_loop_bootstrap_with_sklearn(spatial):
    """Each replicate equals scikit-learn on the images of the drawn blocks, repeated as drawn."""
    rng = np.random.default_rng(0)
    predictions, labels = simulated(rng, 40, 5, [0.8, 0.6])
    with_sparse_classes(predictions, labels)
    blocks = np.repeat(np.arange(10), 4)[rng.permutation(40)] if spatial else np.arange(40)
    members = [np.flatnonzero(blocks == k) for k in range(blocks.max() + 1)]
    rare = [1, 3]
    observed, replicates = bootstrap_metrics(predictions, labels, rare, n_boot=30, seed=7, chunk=8, blocks=blocks)
    assert replicates.shape == (30, 2, len(METRICS))
    drawn = [np.concatenate([members[k] for k in replicate_indices(len(members), b, 7)]) for b in range(30)]
    for m, pred in enumerate(predictions):
        np.testing.assert_allclose(observed[m], sklearn_metrics(pred, labels, rare), atol=1e-9)
        loop = np.array([sklearn_metrics(pred[idx], labels[idx], rare) for idx in drawn])
        np.testing.assert_allclose(replicates[:, m], loop, atol=1e-6)


def test_a_class_without_predictions_leaves_the_macro_precision_in_estimate_and_replicates_alike():
    """Class 0 is predicted for one image: replicates that miss it drop class 0 instead of scoring it 0, so the
    estimate lies inside its own interval."""
    rng = np.random.default_rng(3)
    labels = rng.random((200, 3)) < 0.4
    labels[0, 0] = True
    pred = labels.copy()
    pred[:, 0] = False
    pred[0, 0] = True  # one prediction of class 0, right: precision 1
    pred[:, 1:] = np.where(rng.random((200, 2)) < 0.7, labels[:, 1:], ~labels[:, 1:])
    observed, replicates = bootstrap_metrics([pred], labels, n_boot=400, seed=1)
    k = METRICS.index("precision_macro")
    low, high = percentile_interval(replicates[:, 0, k])
    assert low <= observed[0, k] <= high
    missing = [b for b in range(400) if 0 not in replicate_indices(200, b, 1)]
    assert len(missing) > 100  # about e^-1 of the replicates
    drawn = replicate_indices(200, missing[0], 1)
    others = skm.precision_score(labels[drawn, 1:], pred[drawn, 1:], average="macro")
    assert replicates[missing[0], 0, k] == pytest.approx(others)  # the mean of classes 1 and 2, not a third of 0


def test_replicates_do_not_depend_on_the_chunk_size():
    predictions, labels = simulated(np.random.default_rng(1), 25, 4, [0.7])
    _, a = bootstrap_metrics(predictions, labels, n_boot=20, seed=3, chunk=3)
    _, b = bootstrap_metrics(predictions, labels, n_boot=20, seed=3, chunk=64)
    np.testing.assert_array_equal(a, b)


def test_interval_is_the_percentiles_of_a_direct_bootstrap():
    predictions, labels = simulated(np.random.default_rng(2), 60, 6, [0.75, 0.7])
    observed, replicates = bootstrap_metrics(predictions, labels, n_boot=200, seed=0)
    table = interval_table(observed, replicates, [("own", "a", 0), ("own", "b", 0)], seed_draws(200, 1, 0))
    f1 = [skm.f1_score(labels[idx], predictions[0][idx], average="micro") for idx in
          (replicate_indices(60, b, 0) for b in range(200))]  # fmt: skip
    row = table[(table["loss"] == "a") & (table["metric"] == "f1_micro")].iloc[0]
    assert row["ci_low"] == pytest.approx(100 * np.percentile(f1, 2.5))
    assert row["ci_high"] == pytest.approx(100 * np.percentile(f1, 97.5))
    assert row["estimate"] == pytest.approx(100 * skm.f1_score(labels, predictions[0], average="micro"))
    assert row["test_se"] == pytest.approx(100 * np.std(f1, ddof=1))
    assert np.isnan(row["seed_std"]) and row["dominant_spread"] == ""


def test_difference_intervals_cover_the_true_difference_about_95_percent_of_the_time():
    """Two predictors right with probability 0.8 and 0.7 per entry: their true micro-F1 difference is known."""
    rng = np.random.default_rng(11)
    big_predictions, big_labels = simulated(rng, 400_000, 3, [0.8, 0.7])
    truth = skm.f1_score(big_labels, big_predictions[0], average="micro") - skm.f1_score(
        big_labels, big_predictions[1], average="micro"
    )
    repeats, hits = 200, 0
    for r in range(repeats):
        predictions, labels = simulated(rng, 150, 3, [0.8, 0.7])
        _, replicates = bootstrap_metrics(predictions, labels, n_boot=300, seed=r)
        k = METRICS.index("f1_micro")
        low, high = percentile_interval(replicates[:, 0, k] - replicates[:, 1, k])
        hits += low <= truth <= high
    # 95 % coverage: the hit count lies in the central 99.9 % range of Binomial(200, 0.95).
    low_count, high_count = stats.binom.interval(0.999, repeats, 0.95)
    assert low_count <= hits <= high_count


def test_two_level_adds_the_seed_spread_that_the_test_set_does_not_explain():
    rng = np.random.default_rng(12)
    test_part = 0.01 * rng.standard_normal((4000, 1, 2))
    observed = np.array([[0.50, 0.70], [0.56, 0.70], [0.53, 0.70]])
    # every seed shares one test-set error: none of the seeds' spread comes from test-set sampling
    shared = two_level(observed, observed + test_part, seed_draws(4000, 3, 0))
    np.testing.assert_allclose(shared.seed_sd, [0.03, 0.0], atol=1e-12)
    np.testing.assert_allclose(shared.seed_std, [0.03, 0.0], atol=1e-12) and np.testing.assert_allclose(
        shared.estimate, [0.53, 0.7]
    )
    # replicates = the bootstrapped seed mean plus t_2 × σ / √3: the spread of a t_2 with that scale, and the test part
    seed_term = shared.replicates[:, 0] - (observed + test_part)[:, :, 0].mean(1)
    assert stats.kstest(seed_term / (0.03 / np.sqrt(3)), stats.t(2).cdf).pvalue > 0.01
    np.testing.assert_allclose(shared.replicates[:, 1], 0.7 + test_part[:, 0, 1])
    # each seed with its own test-set error, as large as the seeds' spread: σ̂ shrinks by what that error explains
    own = observed + 0.03 * rng.standard_normal((4000, 3, 2))
    explained = two_level(observed, own, seed_draws(4000, 3, 0))
    expected = np.maximum(0.0, observed.var(0, ddof=1) - (own - own.mean(1, keepdims=True)).var(0, ddof=1).sum(0) / 2)
    np.testing.assert_allclose(explained.seed_sd**2, expected)
    assert explained.seed_sd[0] < 0.03
    single = two_level(observed[:1], observed[:1] + test_part, seed_draws(4000, 1, 0))
    np.testing.assert_array_equal(single.replicates, (observed[:1] + test_part)[:, 0])
    assert np.isnan(single.seed_std).all() and (single.seed_sd == 0).all()


def test_holm_against_a_hand_computed_example():
    # m = 5, sorted 0.01, 0.02, 0.03, 0.04, 0.5 times 5, 4, 3, 2, 1: 0.05, 0.08, 0.09, 0.08 -> 0.09 (monotone), 0.5.
    p = [0.03, 0.01, 0.5, 0.04, 0.02]
    np.testing.assert_allclose(holm(p), [0.09, 0.05, 0.5, 0.09, 0.08])
    np.testing.assert_allclose(holm([0.4, 0.3]), [0.6, 0.6])
    np.testing.assert_allclose(holm([0.9, 0.6]), [1.0, 1.0])


def test_p_value_counts_both_tails():
    assert bootstrap_p_value(np.array([1.0, 2.0, 3.0, -1.0])) == pytest.approx(2 * 2 / 5)
    assert bootstrap_p_value(np.full(99, 0.5)) == pytest.approx(2 / 100)
    assert bootstrap_p_value(np.zeros(10)) == 1.0


def test_pairwise_table_has_every_pair_and_holm_within_each_metric():
    rng = np.random.default_rng(4)
    observed = rng.random((4, 2))
    replicates = observed + 0.05 * rng.standard_normal((500, 4, 2))
    models = [(loss, 0) for loss in "ABCD"]
    table = pairwise_table(observed, replicates, models, ["F1 samples", "F1 micro"], seed_draws(500, 1, 0))
    assert list(table.columns) == ["metric", "loss_a", "loss_b", "difference", "ci_low", "ci_high", "seed_std",
                                   "seeds", "p_value", "p_holm"]  # fmt: skip
    assert len(table) == 2 * 6
    row = table[(table["metric"] == "F1 micro") & (table["loss_a"] == "B") & (table["loss_b"] == "D")].iloc[0]
    assert row["difference"] == pytest.approx(100 * (observed[1, 1] - observed[3, 1]))
    for _, group in table.groupby("metric"):
        np.testing.assert_allclose(group["p_holm"], holm(group["p_value"]))


def test_seed_spread_and_which_dominates():
    """Two seeds that differ by 10 points on identical-noise data: the seeds dominate the test-set spread."""
    predictions, labels = simulated(np.random.default_rng(5), 300, 4, [0.9, 0.6])
    observed, replicates = bootstrap_metrics(predictions, labels, n_boot=100, seed=0)
    table = interval_table(observed, replicates, [("own", "x", 0), ("own", "x", 1)], seed_draws(100, 2, 0))
    row = table[table["metric"] == "f1_samples"].iloc[0]
    assert row["seeds"] == 2
    assert row["seed_std"] == pytest.approx(100 * np.std(observed[:, 2], ddof=1))
    assert row["estimate"] == pytest.approx(100 * observed[:, 2].mean())
    assert row["dominant_spread"] == "seeds"


def test_bootstrap_mean_ci_against_a_direct_loop():
    values = np.random.default_rng(6).normal(2.0, 1.0, 50)
    mean, low, high = bootstrap_mean_ci(values, n_boot=400, seed=9)
    means = [values[replicate_indices(50, b, 9)].mean() for b in range(400)]
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    with pytest.raises(ValueError, match="no values"):
        bootstrap_mean_ci([])


def test_rare_classes_are_the_rarest_third():
    assert rare_classes(pd.Series([5, 1, 9, 1, 7, 3])) == [1, 3]


def fake_evaluations(root: Path, losses=("cel", "sml"), seeds=(0, 1), n: int = 80) -> np.ndarray:
    """Test scores of every (loss, seed) and their metrics.json as ``benloss evaluate`` writes them."""
    rng = np.random.default_rng(8)
    labels = rng.random((n, len(classes()))) < 0.2
    (root / "encoded").mkdir(parents=True)
    np.save(root / "encoded" / "test_labels.npy", labels.astype(np.uint8))
    names = [f"S2A_MSIL2A_2017061{k % 4}T101031_{k // 9}_{k % 9}" for k in range(n)]  # four acquisitions
    (root / "encoded" / "test_patches.txt").write_text("\n".join(names) + "\n")
    pd.DataFrame({"class": classes(), "train": np.arange(19, 0, -1)}).to_csv(root / "counts.csv", index=False)
    for i, loss in enumerate(losses):
        for seed in seeds:
            folder = root / "eval" / "kbranch" / loss / f"seed{seed}"
            folder.mkdir(parents=True)
            scores = (rng.normal(size=labels.shape) + (1.5 + i) * (2 * labels - 1)).astype(np.float32)
            thresholds = {"sample": np.full(labels.shape[1], 0.5), "per_class": np.linspace(-1, 1, labels.shape[1])}
            metrics, _ = evaluate_scores(build_rule(loss, labels.shape[1]), scores, labels.astype(np.uint8), thresholds)
            document = metrics | {"thresholds": thresholds["sample"].tolist(),
                                  "thresholds_per_class": thresholds["per_class"].tolist()}  # fmt: skip
            (folder / "metrics.json").write_text(json.dumps(document))
            np.save(folder / "test_scores.npy", scores)
            model = root / "models" / "kbranch" / loss / f"seed{seed}"
            model.mkdir(parents=True)
            (model / "run.json").write_text(json.dumps({"loss_params": {}}))
    return labels


def bootstrap_of(root: Path, n_boot: int, block: int = 1) -> dict[str, pd.DataFrame]:
    """The bootstrap step on every evaluation under ``root``, given as its rule gives them."""
    return write_bootstrap(
        sorted(root.glob("eval/*/*/seed*/metrics.json")), sorted(root.glob("eval/*/*/seed*/test_scores.npy")),
        sorted(root.glob("models/*/*/seed*/run.json")), root / "encoded", root / "counts.csv", root / "tables",
        n_boot=n_boot, block=block,
    )  # fmt: skip


def test_bootstrap_step_from_evaluations_with_two_seeds(tmp_path):
    fake_evaluations(tmp_path)
    out = bootstrap_of(tmp_path, n_boot=200)
    intervals, pairwise = out["intervals"], out["pairwise"]
    evaluations = tmp_path / "eval" / "kbranch"
    documents = {(loss, seed): json.loads((evaluations / loss / f"seed{seed}" / "metrics.json").read_text())
                 for loss in ("cel", "sml") for seed in (0, 1)}  # fmt: skip
    row = intervals.set_index(["rule", "loss", "metric"]).loc[("calibrated", "SML", "f1_macro")]
    values = [100 * documents[("sml", seed)]["calibrated"]["f1_macro"] for seed in (0, 1)]
    assert row["estimate"] == pytest.approx(np.mean(values)) and row["seed_std"] == pytest.approx(
        np.std(values, ddof=1)
    )
    assert row["seeds"] == 2 and row["dominant_spread"] in ("seeds", "test set")
    assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
    assert len(pairwise) == 7 and list(pairwise["metric"]) == [name for _, name in PAIRWISE_METRICS]
    ranked = intervals.set_index(["rule", "loss", "metric"]).loc[("ranking", "CEL", "map_macro")]
    maps = [100 * documents[("cel", seed)]["ranking"]["map_macro"] for seed in (0, 1)]
    assert (
        ranked["estimate"] == pytest.approx(np.mean(maps))
        and ranked["ci_low"] <= ranked["estimate"] <= ranked["ci_high"]
    )
    map_pair = pairwise[pairwise["metric"] == "mAP macro"].iloc[0]
    sml_maps = [100 * documents[("sml", seed)]["ranking"]["map_macro"] for seed in (0, 1)]
    assert map_pair["difference"] == pytest.approx(np.mean(maps) - np.mean(sml_maps))
    micro = pairwise[pairwise["metric"] == "F1 micro"].iloc[0]
    micro_f1 = {key: document["own_rule"]["f1_micro"] for key, document in documents.items()}
    expected = np.mean([100 * (micro_f1[("cel", s)] - micro_f1[("sml", s)]) for s in (0, 1)])
    assert (micro["loss_a"], micro["loss_b"]) == ("CEL", "SML") and micro["difference"] == pytest.approx(expected)
    assert pd.read_csv(tmp_path / "tables" / "pairwise.csv").shape == (7, 10)
    # per class: the mean over seeds of scikit-learn's F1 (own rule) and AP, inside their intervals
    per_class = pd.read_csv(tmp_path / "tables" / "per_class_intervals.csv").set_index(["metric", "loss", "class"])
    per_class = per_class.sort_index()
    assert len(per_class) == 2 * 2 * len(classes())
    labels = np.load(tmp_path / "encoded" / "test_labels.npy").astype(bool)
    scores = [np.load(tmp_path / "eval" / "kbranch" / "sml" / f"seed{seed}" / "test_scores.npy") for seed in (0, 1)]
    rule = build_rule("sml", labels.shape[1])
    f1 = [skm.f1_score(labels, rule.predict(torch.from_numpy(z)).numpy(), average=None, zero_division=np.nan)
          for z in scores]  # fmt: skip
    ap = [[skm.average_precision_score(labels[:, c], rule.ranking_scores(torch.from_numpy(z)).numpy()[:, c])
           for c in range(labels.shape[1])] for z in scores]  # fmt: skip
    for metric, expected in (("f1", f1), ("ap", ap)):
        rows = per_class.loc[metric, "SML"].loc[list(classes())]
        np.testing.assert_allclose(rows["estimate"], 100 * np.mean(expected, axis=0), rtol=1e-6)
        assert ((rows["ci_low"] <= rows["estimate"]) & (rows["estimate"] <= rows["ci_high"])).all()
        assert (rows["seeds"] == 2).all()


def test_predictions_that_do_not_reproduce_metrics_json_are_refused(tmp_path):
    fake_evaluations(tmp_path, losses=("cel",), seeds=(0,))
    path = tmp_path / "eval" / "kbranch" / "cel" / "seed0" / "metrics.json"
    document = json.loads(path.read_text())
    document["own_rule"]["f1_samples"] += 0.01
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"seed0/metrics\.json: predictions give own_rule sample F1"):
        bootstrap_of(tmp_path, n_boot=100)
    assert not (tmp_path / "tables" / "intervals.csv").exists()


def test_report_sets_seed_spread_beside_the_test_interval_only_with_several_seeds():
    from benloss.report.html import seed_spreads

    long = pd.DataFrame(
        {"metric": ["F1", "F1", "P"], "loss": ["CEL", "SML", "CEL"], "mean": [60.0, 70.0, 50.0],
         "std": [2.0, np.nan, 1.0], "seeds": [3, 1, 3], "ci_low": [58.0, 68.0, 49.0], "ci_high": [62.0, 72.0, 51.0],
         "test_se": [1.0, 1.0, 0.5], "dominant_spread": ["seeds", "", "seeds"]}
    )  # fmt: skip
    assert seed_spreads(long) == [{"loss": "CEL", "mean": 60.0, "std": 2.0, "ci_low": 58.0, "ci_high": 62.0,
                               "test_se": 1.0, "dominant_spread": "seeds"}]  # fmt: skip


def test_undefined_replicates_count_in_neither_tail_nor_the_interval():
    differences = np.r_[np.full(1000, np.nan), np.linspace(-1.0, 3.0, 1000)]
    defined = differences[~np.isnan(differences)]
    assert bootstrap_p_value(differences) == pytest.approx(bootstrap_p_value(defined))
    assert bootstrap_p_value(differences) > 0.1  # not the 2 / 2001 of counting the undefined ones as replicates
    low, high = percentile_interval(differences)
    assert (low, high) == pytest.approx(tuple(np.percentile(defined, [2.5, 97.5])))
    assert np.isnan(bootstrap_p_value(np.full(10, np.nan))) and np.isnan(percentile_interval(np.full(10, np.nan))[0])
    columns = np.stack([differences, np.full(2000, np.nan)], axis=1)  # one metric defined, one never
    low, high = percentile_interval(columns)
    assert low[0] == pytest.approx(np.percentile(defined, 2.5)) and np.isnan(low[1]) and np.isnan(high[1])


def test_ranking_bootstrap_by_block_tallies_equals_the_per_image_path(monkeypatch):
    from benloss.evaluation import comparison

    rng = np.random.default_rng(13)
    labels = rng.random((150, 5)) < 0.3
    rankings = [rng.normal(size=labels.shape) + labels for _ in range(2)]
    blocks = rng.permutation(np.arange(150) % 20)
    by_block = comparison.bootstrap_ranking(rankings, labels, blocks, n_boot=130, seed=2)
    monkeypatch.setattr(comparison, "BLOCK_TALLY_LIMIT", 0)  # many small blocks: image weights per replicate
    per_image = comparison.bootstrap_ranking(rankings, labels, blocks, n_boot=130, seed=2)
    np.testing.assert_allclose(by_block.replicates, per_image.replicates, rtol=2e-6)
    np.testing.assert_allclose(by_block.class_ap_replicates, per_image.class_ap_replicates, rtol=2e-6)
    np.testing.assert_array_equal(by_block.observed, per_image.observed)
