"""The comparison across architectures: τ-b against scipy, ranks against scipy's rankdata, the paired τ interval,
winners and their probabilities by hand, and the step end to end on evaluations written as ``benloss evaluate``
writes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benloss.errors import InputError
from benloss.evaluation.architectures import (
    AGREEMENT_COLUMNS,
    HEADLINE,
    HEADLINE_COLUMNS,
    RANKING_COLUMNS,
    Headline,
    agreement_table,
    kendall_tau,
    probability_best,
    ranking_table,
    ranks,
    winners,
    write_architecture_comparison,
)
from benloss.evaluation.evaluate import evaluate_scores
from benloss.facts.nomenclature import classes
from benloss.layout import ARCHITECTURE_FILES, architecture_of, model_of
from benloss.report.tables import CALIBRATED_F1
from benloss.training.losses import build_rule

LOSSES = ("CEL", "HL", "SML", "RL", "ASL", "FL", "ZLPR", "HAL")


def headline(estimate: np.ndarray, replicates: np.ndarray, losses=LOSSES) -> Headline:
    """One architecture's results with the same values for every headline metric."""
    values = np.repeat(np.asarray(estimate, float)[:, None], len(HEADLINE), axis=1)
    return Headline(tuple(losses), (0, 1, 2), values, np.repeat(replicates[..., None], len(HEADLINE), axis=2),
                    np.zeros_like(values))  # fmt: skip


def test_tau_equals_scipys_kendall_tau_b_with_and_without_ties():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x, y = rng.integers(0, 4, 8).astype(float), rng.normal(size=8)
        y[rng.random(8) < 0.3] = 0.0
        assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    batch_x, batch_y = rng.normal(size=(20, 6)), rng.normal(size=(20, 6))
    expected = [stats.kendalltau(a, b).statistic for a, b in zip(batch_x, batch_y, strict=True)]
    np.testing.assert_allclose(kendall_tau(batch_x, batch_y), expected)
    assert np.isnan(kendall_tau(np.ones(5), np.arange(5.0)))


def test_ranks_are_scipys_rankdata_of_the_negated_values():
    values = np.array([70.0, 65.5, 70.0, 80.0, 50.0, 65.5, 65.5])
    np.testing.assert_array_equal(ranks(values), stats.rankdata(-values, method="average"))


def test_interval_of_nearly_agreeing_rankings_contains_the_observed_tau():
    """Eight losses far apart on both architectures except SML and RL, a tenth of a point apart and swapped on the
    second: τ is 1 − 2/28, and the replicates, which sometimes swap them back, bracket it."""
    rng = np.random.default_rng(1)
    first = np.arange(8.0)[::-1] * 2
    second = first.copy()
    second[[2, 3]] = second[3] - 0.05, second[3] + 0.05
    test_set = 0.3 * rng.standard_normal((400, 8))
    table = agreement_table({"kbranch": headline(first, first + test_set),
                             "resnet18": headline(second, second + test_set[:, ::-1])})  # fmt: skip
    row = table.iloc[0]
    assert row["tau"] == pytest.approx(1 - 2 / 28) == pytest.approx(stats.kendalltau(first, second).statistic)
    assert row["ci_low"] <= row["tau"] <= row["ci_high"]
    assert row["ci_low"] < row["ci_high"]


def test_identical_rankings_have_the_interval_one_to_one():
    rng = np.random.default_rng(2)
    values = rng.normal(size=8)
    replicates = values + 0.5 * rng.standard_normal((300, 8))
    table = agreement_table({"kbranch": headline(values, replicates),
                             "vit_small": headline(3 * values + 10, 3 * replicates + 10)})  # fmt: skip
    assert list(table.columns) == AGREEMENT_COLUMNS and list(table["metric"]) == list(HEADLINE)
    assert (table["tau"] == 1).all() and (table["ci_low"] == 1).all() and (table["ci_high"] == 1).all()
    assert table["same_winner"].all() and (table["winner_agreement"] == 1).all()


def test_winners_and_probability_of_being_best_by_hand():
    replicates = np.array([[3.0, 1.0, 2.0], [3.0, 1.0, 2.0], [1.0, 2.0, 3.0], [2.0, 2.0, 1.0], [np.nan, 1.0, 0.0]])
    # replicates 1 and 2: the first; 3: the third; 4: the first two tie (half each); 5 undefined, counts nowhere
    np.testing.assert_allclose(probability_best(replicates), [2.5 / 4, 0.5 / 4, 1 / 4])
    np.testing.assert_array_equal(winners(np.array([1.0, 4.0, 4.0, 2.0])), [False, True, True, False])
    losses = ("CEL", "HL", "SML")
    table = ranking_table({"resnet50": headline(np.array([60.0, 70.0, 65.0]), replicates, losses)})
    f1 = table[table["metric"] == "F1 samples"].set_index("loss")
    assert list(table.columns) == RANKING_COLUMNS
    assert list(f1["rank"]) == [3.0, 1.0, 2.0] and list(f1["winner"]) == [False, True, False]
    np.testing.assert_allclose(f1["p_best"], [2.5 / 4, 0.5 / 4, 1 / 4])


def test_the_winner_changes_between_architectures_by_hand():
    losses = ("CEL", "HL", "SML")
    first = np.array([[3.0, 1.0, 2.0], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    second = np.array([[1.0, 3.0, 2.0], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [2.0, 3.0, 1.0]])
    table = agreement_table({"kbranch": headline(np.array([3.0, 1.0, 2.0]), first, losses),
                             "resnet18": headline(np.array([1.0, 3.0, 2.0]), second, losses)})  # fmt: skip
    row = table.iloc[0]
    assert (row["winner_a"], row["winner_b"], row["same_winner"]) == ("CEL", "HL", False)
    assert row["winner_agreement"] == pytest.approx(2 / 4)  # replicates 2 and 3 have the same winner


def fake_architectures(root: Path, strengths: dict[str, dict[str, float]], seeds=(0, 1), n: int = 72) -> None:
    """Test labels, patch names (four acquisitions) and, per architecture, loss and seed, test scores that separate
    the classes by the loss's strength, with metrics.json and run.json as ``benloss evaluate`` and training write
    them."""
    rng = np.random.default_rng(8)
    labels = rng.random((n, len(classes()))) < 0.2
    (root / "encoded").mkdir(parents=True)
    np.save(root / "encoded" / "test_labels.npy", labels.astype(np.uint8))
    names = [f"S2A_MSIL2A_2017061{k % 4}T101031_{k // 9}_{k % 9}" for k in range(n)]
    (root / "encoded" / "test_patches.txt").write_text("\n".join(names) + "\n")
    thresholds = {"sample": np.full(labels.shape[1], 0.5), "per_class": np.linspace(-1, 1, labels.shape[1])}
    for arch, by_loss in strengths.items():
        for loss, strength in by_loss.items():
            for seed in seeds:
                folder = root / "eval" / arch / loss / f"seed{seed}"
                folder.mkdir(parents=True)
                scores = (rng.normal(size=labels.shape) + strength * (2 * labels - 1)).astype(np.float32)
                metrics, _ = evaluate_scores(build_rule(loss, labels.shape[1]), scores, labels.astype(np.uint8),
                                             thresholds)  # fmt: skip
                document = metrics | {"thresholds": thresholds["sample"].tolist(),
                                      "thresholds_per_class": thresholds["per_class"].tolist()}  # fmt: skip
                (folder / "metrics.json").write_text(json.dumps(document))
                np.save(folder / "test_scores.npy", scores)
                model = root / "models" / arch / loss / f"seed{seed}"
                model.mkdir(parents=True)
                (model / "run.json").write_text(json.dumps({"loss_params": {}}))


def comparison_of(root: Path, n_boot: int = 60) -> dict[str, pd.DataFrame]:
    """The step on every evaluation under ``root``, given as a rule lists them."""
    return write_architecture_comparison(
        sorted(root.glob("eval/*/*/seed*/metrics.json")), sorted(root.glob("eval/*/*/seed*/test_scores.npy")),
        sorted(root.glob("models/*/*/seed*/run.json")), root / "encoded", root / "architectures", n_boot=n_boot,
        block=3,
    )  # fmt: skip


def test_comparison_of_two_architectures_end_to_end(tmp_path):
    fake_architectures(tmp_path, {"kbranch": {"cel": 0.6, "hl": 1.2, "sml": 2.4},
                                  "resnet18": {"cel": 2.4, "hl": 1.2, "sml": 0.6}})  # fmt: skip
    tables = comparison_of(tmp_path)
    out = tmp_path / "architectures"
    assert all((out / name).stat().st_size > 0 for name in ARCHITECTURE_FILES.values())
    headline_csv = pd.read_csv(out / ARCHITECTURE_FILES["headline"])
    assert list(headline_csv.columns) == HEADLINE_COLUMNS and len(headline_csv) == 2 * 3 * 3
    documents = {(architecture_of(path), *model_of(path)): json.loads(path.read_text())
                 for path in tmp_path.glob("eval/*/*/seed*/metrics.json")}  # fmt: skip
    keys = {"F1 samples": ("own_rule", "f1_samples"), CALIBRATED_F1: ("calibrated", "f1_samples"),
            "mAP macro": ("ranking", "map_macro")}  # fmt: skip
    means = {}
    for row in headline_csv.itertuples():
        loss = row.loss.lower()
        group, metric = keys[row.metric]
        values = [100 * documents[row.architecture, loss, seed][group][metric] for seed in (0, 1)]
        means[row.architecture, row.metric, row.loss] = np.mean(values)
        assert row.mean == pytest.approx(np.mean(values)) and row.std == pytest.approx(np.std(values, ddof=1))
        assert row.ci_low <= row.mean <= row.ci_high and row.seeds == 2
    ranking = pd.read_csv(out / ARCHITECTURE_FILES["ranking"])
    for (arch, metric), group in ranking.groupby(["architecture", "metric"]):
        expected = [means[arch, metric, loss] for loss in group["loss"]]
        np.testing.assert_allclose(group["value"], expected)
        np.testing.assert_array_equal(group["rank"], stats.rankdata(-np.array(expected), method="average"))
        assert group["p_best"].sum() == pytest.approx(1)
    agreement = pd.read_csv(out / ARCHITECTURE_FILES["agreement"]).set_index("metric")
    assert list(agreement.index) == list(HEADLINE)
    for metric, row in agreement.iterrows():
        first = [means["kbranch", metric, loss] for loss in ("CEL", "HL", "SML")]
        second = [means["resnet18", metric, loss] for loss in ("CEL", "HL", "SML")]
        assert row["tau"] == pytest.approx(stats.kendalltau(first, second).statistic)
        winner_a, winner_b = ("CEL", "HL", "SML")[np.argmax(first)], ("CEL", "HL", "SML")[np.argmax(second)]
        assert (row["winner_a"], row["winner_b"], row["same_winner"]) == (winner_a, winner_b, winner_a == winner_b)
    # the ranking score orders the losses by how well their scores separate the classes, reversed on ResNet-18
    assert agreement.loc["mAP macro", "tau"] == -1
    assert agreement.loc["mAP macro", ["winner_a", "winner_b"]].tolist() == ["SML", "CEL"]
    pd.testing.assert_frame_equal(tables["agreement"].set_index("metric"), agreement, check_dtype=False)


def test_one_architecture_writes_an_empty_agreement_table(tmp_path):
    fake_architectures(tmp_path, {"resnet50": {"cel": 0.6, "sml": 2.4}}, seeds=(0,))
    comparison_of(tmp_path, n_boot=20)
    out = tmp_path / "architectures"
    agreement = pd.read_csv(out / ARCHITECTURE_FILES["agreement"])
    assert agreement.empty and list(agreement.columns) == AGREEMENT_COLUMNS
    assert len(pd.read_csv(out / ARCHITECTURE_FILES["ranking"])) == 3 * 2
    assert (out / ARCHITECTURE_FILES["figure"]).stat().st_size > 0


def test_architectures_with_other_seeds_are_refused_and_nothing_is_written(tmp_path):
    fake_architectures(tmp_path, {"kbranch": {"cel": 1.0, "sml": 2.0}, "resnet18": {"cel": 1.0, "sml": 2.0}})
    for path in (tmp_path / "eval" / "resnet18").glob("*/seed1/*"):
        path.unlink()
    for path in (tmp_path / "models" / "resnet18").glob("*/seed1/*"):
        path.unlink()
    with pytest.raises(InputError, match=r"same losses and seeds: kbranch has cel, sml with seeds \[0, 1\], "
                                         r"resnet18 cel, sml with seeds \[0\]"):  # fmt: skip
        comparison_of(tmp_path)
    assert not (tmp_path / "architectures").exists() or not any((tmp_path / "architectures").iterdir())
