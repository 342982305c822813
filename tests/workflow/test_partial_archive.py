"""A study on a partial copy of BigEarthNet v2.0 with the official metadata, from the archive to the report:
``data.allow_missing`` drops what the copy lacks, ``data.subset`` draws half the training patches it holds."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml

from benloss.facts.splits import read_list

from ..support import V2_SHIPPED, V2_TEST_PATCH, partial_v2_archive, snakemake

PARTIAL = {"train": 16, "val": 4, "test": 4}


@pytest.mark.slow
def test_a_partial_copy_runs_to_its_report(tmp_path):
    partial_v2_archive(tmp_path / "copy", PARTIAL)
    config = {
        "run": "partial-v2",
        "data": {
            "source": "bigearthnet-v2",
            "allow_missing": True,
            "subset": {"train": 0.5, "seed": 1},
            "v2": {
                "s2": str(tmp_path / "copy" / "BigEarthNet-S2"),
                "reference_maps": str(tmp_path / "copy" / "Reference_Maps"),
                "metadata": str(V2_SHIPPED / "metadata.parquet"),
                "exclusions": str(V2_SHIPPED / "metadata_for_patches_with_snow_cloud_or_shadow.parquet"),
            },
        },
        "model": {"width": 16},
        "training": {"losses": ["cel", "fl"], "epochs": 1, "batch_size": 4, "threads": 1, "mem_mb": 1000},
        "statistics": {"bootstrap": 100},
        "landscape": {"snapshots": 0},  # one epoch: no trajectory to draw
        "explain": {"per_class": 1, "examples": [{"class": "Arable land"}]},  # a class of the real test patch
    }
    path = tmp_path / "partial.yaml"
    path.write_text(yaml.safe_dump(config))
    results = tmp_path / "results"
    result = snakemake("--cores", "2", "--configfile", str(path), "--config", f"results={results}", "--quiet",
                       "rules", timeout=1200)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    run = results / "partial-v2"
    summary = json.loads((run / "labels" / "summary.json").read_text())
    assert summary["kept"] == {"train": 8, "val": 4, "test": 4}
    assert summary["subset"]["splits"]["train"]["of"] == 16
    assert read_list(run / "labels" / "subset_train.csv") == (run / "encoded" / "train_patches.txt").read_text().split()
    html = (run / "report.html").read_text()
    text = re.sub(r"<[^>]+>", "", html)
    for sentence in ("16 of 237,871 train patches present", "4 of 122,342 val patches present",
                     "4 of 119,825 test patches present", '15 kept patch(es) have no reference map'):  # fmt: skip
        assert sentence in text, sentence
    assert 'id="subset-sizes"' in html and 'id="subset-classes"' in html
    assert "not checked: a local copy (data.v2.s2)" in text
    scored = pd.read_csv(run / "kbranch" / "explain" / "lrp_examples.csv")
    assert len(scored) and set(scored["patch"]) == {V2_TEST_PATCH}  # the one test patch with a reference map
