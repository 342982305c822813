"""The workflow end to end on the tiny config, its configuration checks and the paper's plan."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from benloss.facts.loss_catalog import LOSS_IDS, PAPER_LOSS_IDS, loss_info

from ..support import ROOT, TINY, snakemake

ARCHITECTURES = yaml.safe_load(TINY.read_text())["model"]["architectures"]


def test_every_stage_produces_its_outputs(tiny_run):
    assert ARCHITECTURES == ["kbranch", "resnet18"]
    for path in ("labels/patches.parquet", "labels/class_counts.csv", "labels/summary.json", "encoded/meta.json",
                 "architectures/headline.csv", "architectures/ranking.csv", "architectures/agreement.csv",
                 "architectures/ranking.png", "report.html"):  # fmt: skip
        assert (tiny_run / path).exists(), path
    for arch in ARCHITECTURES:  # every architecture's tables, figures and explanations
        for path in ("tables/table1.csv", "tables/table2.csv", "tables/lrp_scores.csv", "figures/f1_curves.pdf",
                     "figures/lrp_heatmaps.png", "figures/f1_time.png", "figures/pairwise_f1.png",
                     "tables/intervals.csv", "figures/lrp_scores.png", "explain/zbox_bounds.csv",
                     "explain/conservation.csv", "figures/landscapes.png", "figures/landscape_slices.png",
                     "tables/landscape.csv"):  # fmt: skip
            assert (tiny_run / arch / path).exists(), (arch, path)
    assert set(yaml.safe_load(TINY.read_text())["training"]["losses"]) == set(LOSS_IDS)
    for arch in ARCHITECTURES:
        for loss in LOSS_IDS:
            history = pd.read_csv(tiny_run / "models" / arch / loss / "seed0" / "history.csv")
            assert list(history["epoch"]) == [1, 2]
            run = json.loads((tiny_run / "models" / arch / loss / "seed0" / "run.json").read_text())
            assert (run["architecture"], run["loss"]) == (arch, loss)
            assert json.loads((tiny_run / "eval" / arch / loss / "seed0" / "metrics.json").read_text())["loss"] == loss
            snapshots = sorted((tiny_run / "models" / arch / loss / "seed0" / "snapshots").iterdir())
            assert [p.name for p in snapshots] == ["snapshot00.pt", "snapshot01.pt", "snapshot02.pt"]
            landscape = json.loads((tiny_run / "landscape" / arch / loss / "seed0" / "landscape.json").read_text())
            assert (landscape["loss"], landscape["architecture"], landscape["snapshot_epochs"]) == (
                loss,
                arch,
                [0, 1, 2],
            )
    documents = [json.loads((tiny_run / "eval" / arch / loss / "seed0" / "metrics.json").read_text())
                 for arch in ARCHITECTURES for loss in LOSS_IDS]  # fmt: skip
    assert len({document["calibration"] for document in documents}) == 1  # one protocol for every loss
    assert {
        document["loss"]: document["own_rule_parameters"] for document in documents if document["own_rule_parameters"]
    }.keys() == {"rl"}


def test_each_job_logs_what_it_did(tiny_run):
    for arch in ARCHITECTURES:
        log = (tiny_run / "logs" / "train" / arch / "cel_seed0.log").read_text()
        assert f"architecture {arch}, device cpu" in log and "parameters" in log and "epoch 2:" in log


def test_report_holds_every_section_and_the_tables_numbers(tiny_run):
    html = (tiny_run / "report.html").read_text()
    anchors = ("setup", "table1", "significance", "pairwise-matrix", "fig2", "f1-time", "per-class", "table2",
               "table2-paper", "table2-agreement", "text-versus-maths", "landscapes", "table2-landscape", "fig1",
               "architectures", "architecture-agreement", "guidelines", "provenance")  # fmt: skip
    for anchor in anchors:
        assert f'id="{anchor}"' in html, anchor
    assert 'id="demo-banner"' in html
    for abbreviation in ("CEL", "FL", "W-CEL", "HAL", "HL", "RL", "SML", "ASL", "ZLPR"):
        assert f"<th>{abbreviation}</th>" in html
    for loss in ("asl", "zlpr"):  # later additions: marked so, and no paper number beside ours
        assert re.search(f"<td>{loss_info(loss).abbreviation}</td><td>[^<]+</td><td>later addition</td>", html), loss
    assert html.count('<span title="not in the paper">—</span>') == 3 * 2
    assert "<td>NA / " in html and "<td>nan / " not in html  # the paper's mark "not applied" (HAL, RL), not NaN
    table1 = pd.read_csv(tiny_run / "kbranch" / "tables" / "table1.csv")
    for value in table1.loc[table1["metric"] == "F1", "mean"]:
        assert f"{value:.1f}" in html
    scored = len((tiny_run / "kbranch/tables/lrp_scores.csv").read_text().splitlines()) > 1  # with reference maps
    # the seven figures, the LRP scores' chart where scored, the ranking across architectures and the landscapes
    assert 'src="http' not in html and html.count("data:image/png;base64,") == 7 + scored + 1 + 2
    assert 'id="zbox-bounds"' in html and ('id="lrp-scores"' if scored else 'id="lrp-not-scored"') in html
    for low, high in table1.loc[table1["metric"] == "F1", ["ci_low", "ci_high"]].itertuples(index=False):
        assert f"[{low:.1f}, {high:.1f}]" in html
    summary = json.loads((tiny_run / "labels" / "summary.json").read_text())
    assert f"{summary['kept']['train']} / {summary['kept']['val']} / {summary['kept']['test']}" in html


def test_pairwise_table_compares_every_pair_of_the_runs_losses(tiny_run):
    pairwise = pd.read_csv(tiny_run / "kbranch" / "tables" / "pairwise.csv")
    n = len(LOSS_IDS)
    columns = [
        "metric",
        "loss_a",
        "loss_b",
        "difference",
        "ci_low",
        "ci_high",
        "seed_std",
        "seeds",
        "p_value",
        "p_holm",
    ]
    assert list(pairwise.columns) == columns
    assert (pairwise.groupby("metric").size() == n * (n - 1) // 2).all()
    table1 = pd.read_csv(tiny_run / "kbranch" / "tables" / "table1.csv").set_index(["metric", "loss"])["mean"]
    for row in pairwise[pairwise["metric"] == "F1 samples"].itertuples():
        assert row.difference == pytest.approx(table1[("F1", row.loss_a)] - table1[("F1", row.loss_b)], abs=1e-4)
        assert row.p_value <= row.p_holm <= 1


def test_rerun_has_nothing_to_do(tiny_run):
    result = snakemake("--cores", "1", "--configfile", str(TINY), "--config", f"results={tiny_run.parent}", "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_paper_config_shows_the_full_plan_without_any_file():
    result = snakemake("-n", "--configfile", str(ROOT / "config" / "bigearthnet.yaml"), "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout + result.stderr
    # seven losses × three seeds
    for rule, count in (("download", 1), ("prepare", 1), ("train", 21), ("evaluate", 21),
                        ("landscape", 21), ("landscapes", 1), ("explain", 1), ("report", 1)):  # fmt: skip
        assert any(line.split() == [rule, str(count)] for line in text.splitlines()), (rule, text[-2000:])


def test_train_jobs_get_weight_decay_and_wcel_weighting():
    result = snakemake("-n", "-p", "--configfile", str(ROOT / "config" / "bigearthnet.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    commands = [line for line in result.stdout.splitlines() if "benloss train" in line]
    assert len(commands) == 21 and all('"weight_decay": 0,' in line for line in commands)
    wcel = """--loss-params '{"weighting": "positive", "weights": "negatives_over_positives"}'"""
    assert any("--loss wcel" in line and wcel in line for line in commands)


def test_v2_config_shows_the_full_plan_without_any_file():
    result = snakemake("-n", "--configfile", str(ROOT / "config" / "bigearthnet_v2.yaml"), "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout + result.stderr
    for rule, count in (("download", 4), ("prepare", 1), ("train", 21), ("report", 1)):
        assert any(line.split() == [rule, str(count)] for line in text.splitlines()), (rule, text[-2000:])


def test_v2_local_copies_skip_their_downloads(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "bigearthnet_v2.yaml").read_text())
    config["data"]["v2"] |= {
        "s2": str(tmp_path / "BigEarthNet-S2"),
        "metadata": "resources/bigearthnet_v2/metadata.parquet",
    }
    (tmp_path / "BigEarthNet-S2").mkdir()
    path = tmp_path / "v2.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "-p", "--configfile", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout + result.stderr
    assert any(line.split() == ["download", "2"] for line in text.splitlines()), text[-2000:]
    assert f"--archive {tmp_path / 'BigEarthNet-S2'}" in text


@pytest.mark.slow
def test_demo_in_v2_layout_runs_through_the_data_stages():
    results = ROOT / "results" / "tiny-v2"
    shutil.rmtree(results, ignore_errors=True)
    config = str(ROOT / ".test" / "config" / "config_v2.yaml")
    result = snakemake(f"{results.relative_to(ROOT)}/encoded", "--cores", "2", "--configfile", config, "--quiet")
    assert result.returncode == 0, result.stderr[-4000:]
    meta = json.loads((results / "encoded" / "meta.json").read_text())
    assert (meta["dataset"], meta["version"]) == ("demo", "2.0")
    summary = json.loads((results / "labels" / "summary.json").read_text())
    assert meta["splits"] == summary["kept"] and sum(summary["kept"].values()) > 30
    for split in ("train", "val", "test"):
        maps = np.load(results / "encoded" / f"{split}_reference_maps.npy")
        assert maps.shape == (meta["splits"][split], 120, 120) and maps.dtype == np.uint8
    assert (results / "encoded" / "training_band_statistics.csv").exists()


@pytest.mark.parametrize("name", ["bigearthnet", "bigearthnet_v2"])
def test_extended_config_is_the_paper_config_with_all_nine_losses(name):
    from snakemake.utils import update_config

    base, overlay = (ROOT / "config" / f"{name}{suffix}.yaml" for suffix in ("", "_extended"))
    paper = yaml.safe_load(base.read_text())
    added = yaml.safe_load(overlay.read_text())
    asl = {"gamma_pos": 0.0, "gamma_neg": 4.0, "margin": 0.05}
    # Only what differs, so each setting of the study has one home: the base.
    assert added == {"training": {"losses": list(LOSS_IDS)}, "loss_params": {"asl": asl}}
    extended = yaml.safe_load(base.read_text())
    update_config(extended, added)  # what `--configfile base overlay` does
    assert extended["training"].pop("losses") == list(LOSS_IDS)
    assert paper["training"].pop("losses") == list(PAPER_LOSS_IDS)
    assert extended["loss_params"].pop("asl") == asl
    assert extended == paper  # same run folder and settings: the seven losses' trained models are reused
    result = snakemake("-n", "--configfile", str(base), str(overlay), "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    assert any(line.split() == ["train", "27"] for line in lines), lines[-40:]  # nine losses × three seeds


def test_paper_config_has_the_papers_settings():
    from benloss.facts import paper

    config = yaml.safe_load((ROOT / "config" / "bigearthnet.yaml").read_text())
    assert config["training"]["lr"] == paper.LEARNING_RATE == 1e-4
    assert config["training"]["weight_decay"] == 0  # the official code never adds its L2 losses
    assert config["loss_params"]["wcel"] == {"weighting": "positive", "weights": "negatives_over_positives"}
    assert config["training"]["epochs"] == paper.EPOCHS == 80
    assert config["model"]["width"] == paper.WIDTH == 1024
    assert config["training"]["losses"] == ["cel", "fl", "wcel", "hal", "hl", "rl", "sml"]
    assert config["data"]["download"]["md5"] == "5a64e9ce38deb036a435a7b59494924c"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"training": {"epochz": 3}}, "epochz"),
        ({"model": {"width": "wide"}}, "wide"),
        ({"data": {"source": "s3"}}, "s3"),
        ({"loss_params": {"wcel": {"weighting": "negative"}}}, "negative"),
        ({"training": {"weight_decay": -1}}, "-1"),
        ({"data": {"demo": {"format": "v3"}}}, "v3"),
    ],
)
def test_wrong_config_stops_with_a_message_naming_the_key(tmp_path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(change))
    result = snakemake("-n", "--configfile", str(path))
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_lint_is_clean():
    result = snakemake("--lint", "--cores", "1")
    assert result.returncode == 0, result.stdout + result.stderr


def test_encoded_arrays_are_what_training_read(tiny_run):
    labels = np.load(tiny_run / "encoded" / "val_labels.npy")
    for arch in ARCHITECTURES:
        scores = np.load(tiny_run / "models" / arch / "cel" / "seed0" / "val_scores.npy")
        assert scores.shape == labels.shape


def test_snakemake_report_collects_tables_and_figures(tiny_run, tmp_path):
    archive = tmp_path / "report.zip"
    result = snakemake("--cores", "1", "--configfile", str(TINY), "--config", f"results={tiny_run.parent}",
                       "--report", str(archive))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    import zipfile

    names = zipfile.ZipFile(archive).namelist()
    for expected in ("table1.csv", "table2.csv", "pairwise.csv", "pairwise_f1.png", "f1_curves.png", "f1_time.png",
                     "lrp_heatmaps.png", "class_counts.csv", "headline.csv", "agreement.csv",
                     "ranking.png"):  # fmt: skip
        assert any(name.endswith(expected) for name in names), expected


def plan(*configs: str) -> list[str]:
    """The train commands of a dry run of the given config files (under config/)."""
    result = snakemake("-n", "-p", "--configfile", *(str(ROOT / "config" / name) for name in configs))
    assert result.returncode == 0, result.stderr[-3000:]
    return [line.strip() for line in result.stdout.splitlines() if "benloss train" in line]


def test_architecture_overlay_adds_two_backbones_and_reuses_the_base_models():
    base = plan("bigearthnet_v2.yaml")
    overlay = plan("bigearthnet_v2.yaml", "bigearthnet_v2_architectures.yaml")
    assert len(base) == 21 and len(overlay) == 63  # seven losses × three seeds × three architectures
    by_architecture = {arch: [c for c in overlay if f"--architecture {arch} " in c]
                       for arch in ("kbranch", "resnet50", "vit_small")}  # fmt: skip
    assert all(len(commands) == 21 for commands in by_architecture.values())
    assert sorted(by_architecture["kbranch"]) == sorted(base)  # same commands: the base's models are reused
    # One recipe for every architecture: the base's RMSprop at 1e-4, batch 256, 80 epochs.
    assert all('"optimizer": "rmsprop"' in c and '"lr": 0.0001' in c and '"epochs": 80' in c for c in overlay)
    result = snakemake("-n", "--quiet", "rules", "--configfile", str(ROOT / "config" / "bigearthnet_v2.yaml"),
                       str(ROOT / "config" / "bigearthnet_v2_architectures.yaml"))  # fmt: skip
    lines = (result.stdout + result.stderr).splitlines()
    # Fig. 1 for the two CNNs, not for the ViT; one comparison across architectures.
    for rule, count in (("explain", 2), ("architectures", 1), ("bootstrap", 3), ("report", 1)):
        assert any(line.split() == [rule, str(count)] for line in lines), (rule, lines[-40:])


def test_anchor_config_trains_cel_with_the_bifold_recipe():
    (command,) = plan("bigearthnet_v2.yaml", "bigearthnet_v2_resnet50_anchor.yaml")
    assert "--architecture resnet50 --loss cel --seed 0" in command
    for setting in ('"optimizer": "adamw"', '"lr": 0.001', '"batch_size": 512', '"schedule": "cosine"',
                    '"warmup_epochs": 1'):  # fmt: skip
        assert setting in command, setting
    assert "results/bigearthnet-v2-resnet50-anchor/models/resnet50/cel/seed0" in command


def test_a_recipe_changes_only_its_architecture(tmp_path):
    path = tmp_path / "recipe.yaml"
    recipe = {"optimizer": "adamw", "lr": 0.002}
    model = {"architectures": ["kbranch", "resnet18"], "recipes": {"resnet18": recipe}}
    path.write_text(yaml.safe_dump({"model": model}))
    result = snakemake("-n", "-p", "--configfile", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    commands = [line for line in result.stdout.splitlines() if "benloss train" in line]
    resnet = [c for c in commands if "--architecture resnet18" in c]
    kbranch = [c for c in commands if "--architecture kbranch" in c]
    assert len(resnet) == len(kbranch) == 7
    models = {arch: [json.loads(re.search(r"--model '([^']+)'", c).group(1)) for c in commands]
              for arch, commands in (("resnet18", resnet), ("kbranch", kbranch))}  # fmt: skip
    assert all(m["recipes"] == {"resnet18": {"optimizer": "adamw", "lr": 0.002}} for m in models["resnet18"])
    assert not any("recipes" in m for m in models["kbranch"])


def test_a_study_without_an_explained_architecture_stops_with_a_message(tmp_path):
    path = tmp_path / "vit.yaml"
    path.write_text(yaml.safe_dump({"model": {"architectures": ["vit_small"]}}))
    result = snakemake("-n", "--configfile", str(path))
    assert result.returncode != 0
    assert "none has a sound LRP composite" in result.stdout + result.stderr
