"""Shared fixtures: a small demo archive, its label table and its encoded arrays, made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from benloss.data.prepare import prepare
from benloss.data.sources import open_source
from benloss.data.synth import SynthConfig, make_demo_archive

from .support import GPU_TESTS_ON_CPU, TINY, demo_lists, snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole study on the tiny config, from scratch, once per session, under a temporary results folder (here,
    so that every module that uses it shares one run: a fixture imported into a module has its own cache)."""
    results = tmp_path_factory.mktemp("results")
    result = snakemake("--cores", "2", "--configfile", str(TINY), "--config", f"results={results}", "--quiet",
                       "rules", timeout=1500)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return results / "tiny"


@pytest.fixture
def accelerator() -> torch.device:
    """The CUDA device for tests marked ``gpu``; they skip without one, under CI too (an exception to the rule
    that CI fails on a missing tool: CI machines have no GPU, and `make gpu-check` runs these on one)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get(GPU_TESTS_ON_CPU) == "1":
        return torch.device("cpu")
    pytest.skip("no CUDA device: run `make gpu-check` on a GPU machine")


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """A 48-patch demo archive folder (archive, masks, statistics, lists)."""
    folder = tmp_path_factory.mktemp("demo") / "archive"
    make_demo_archive(folder, SynthConfig(patches=48, seed=3))
    return folder


@pytest.fixture(scope="session")
def demo_prepared(demo, tmp_path_factory) -> Path:
    """The demo's ``labels/`` and ``encoded/`` (no reference maps), from the workflow's one-pass step."""
    out = tmp_path_factory.mktemp("prepared")
    source = open_source("demo", "v1", demo / "BigEarthNet-demo.tar.gz", lists=demo_lists(demo),
                         band_statistics=demo / "band_statistics.csv")  # fmt: skip
    prepare(source, out / "labels", out / "encoded")
    return out


@pytest.fixture(scope="session")
def demo_labels(demo_prepared) -> Path:
    return demo_prepared / "labels"


@pytest.fixture(scope="session")
def demo_encoded(demo_prepared) -> Path:
    return demo_prepared / "encoded"
