"""The DAG tells the truth: every aggregating step reads exactly its declared inputs, so a results folder that
holds more models than the config names shows the config's, and Snakemake reruns only what changed."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import yaml

from ..support import TINY, snakemake

AGGREGATING = {"run_config", "bootstrap", "tables", "figures", "explain", "report"}


def planned_jobs(text: str) -> dict[str, int]:
    """Rule -> job count from `snakemake -n --quiet rules` output."""
    counts = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if match and match[1] not in ("total", "job"):
            counts[match[1]] = int(match[2])
    return counts


@pytest.mark.slow
def test_a_smaller_study_in_the_same_folder_shows_only_its_own_models(tmp_path):
    base = yaml.safe_load(TINY.read_text())
    base["run"] = "dag"
    base["data"]["demo"]["patches"] = 40
    base["training"] |= {"epochs": 1}
    base["landscape"]["snapshots"] = 0  # one epoch: no trajectory to draw
    base["model"]["architectures"] = ["kbranch"]  # the tiny run's first: one job per aggregating step
    base["explain"]["per_class"] = 1
    big = base | {"training": base["training"] | {"losses": ["sml", "cel", "rl"], "seeds": [0, 1]}}
    small = base | {"training": base["training"] | {"losses": ["rl", "cel"], "seeds": [0]}}
    configs = {}
    for name, config in (("big", big), ("small", small)):
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(config | {"results": str(tmp_path / "results")}))
    result = snakemake("--cores", "2", "--configfile", str(configs["big"]), "--quiet", "rules", timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]

    plan = snakemake("-n", "--cores", "1", "--configfile", str(configs["small"]), "--quiet", "rules")
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = planned_jobs(plan.stdout + plan.stderr)
    assert set(jobs) - {"all"} == AGGREGATING and all(count == 1 for count in jobs.values()), jobs

    result = snakemake("--cores", "2", "--configfile", str(configs["small"]), "--quiet", "rules", timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "results" / "dag"
    tables = run / "kbranch" / "tables"
    table1 = pd.read_csv(tables / "table1.csv")
    assert list(table1["loss"].drop_duplicates()) == ["CEL", "RL"] and set(table1["seeds"]) == {1}
    for name in ("table2.csv", "per_class_f1.csv"):
        frame = pd.read_csv(tables / name, index_col=0)
        assert {"CEL", "RL"} == (set(frame.index) if name == "table2.csv" else set(frame.columns)), name
    intervals = pd.read_csv(tables / "intervals.csv")
    assert set(intervals["loss"]) == {"CEL", "RL"} and set(intervals["seeds"]) == {1}
    assert set(pd.read_csv(tables / "pairwise.csv")[["loss_a", "loss_b"]].stack()) == {"CEL", "RL"}
    assert set(pd.read_csv(run / "kbranch" / "explain" / "conservation.csv")["loss"]) == {"CEL", "RL"}
    html = (run / "report.html").read_text()
    assert "<th>SML</th>" not in html and "<th>RL</th>" in html
    again = snakemake("-n", "--cores", "1", "--configfile", str(configs["small"]))
    assert "Nothing to be done" in again.stdout + again.stderr
