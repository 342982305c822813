"""Shared fixtures: a small demo archive, its label table and its encoded arrays, made once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benloss.datasets import open_source
from benloss.prepare import prepare
from benloss.splits import list_paths
from benloss.synth import SynthConfig, make_demo_archive

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_ARCHIVE = ROOT / "tests" / "data" / "BigEarthNet-S2-Example.tar.bz2"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY = ROOT / ".test" / "config" / "config.yaml"
TINY_RESULTS = ROOT / "results" / "tiny"


def snakemake(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_run() -> Path:
    """The whole study on the tiny config, from scratch, once per session (here, so that every module that
    uses it shares one run: a fixture imported into a module is a second fixture with its own cache)."""
    shutil.rmtree(TINY_RESULTS, ignore_errors=True)
    result = snakemake("--cores", "2", "--configfile", str(TINY), "--quiet", "rules", timeout=1500)
    assert result.returncode == 0, result.stderr[-4000:]
    return TINY_RESULTS


def require_tool(name: str, reason: str) -> str:
    """The tool's path; a skip with ``reason`` where it is missing, but a failure under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: {reason}"
        if IN_CI:
            pytest.fail(message + " (CI must install it: see .ci/run)")
        pytest.skip(message)
    return path


#: Set by `benchmarks/gpu_check.py --smoke`: the tests marked ``gpu`` run on the CPU (the code paths, not the card).
GPU_TESTS_ON_CPU = "BENLOSS_GPU_TESTS_ON_CPU"


@pytest.fixture
def accelerator() -> torch.device:
    """The CUDA device for tests marked ``gpu``; they skip without one, under CI too (an exception to the rule
    that CI fails on a missing tool: CI machines have no GPU, and `make gpu-check` runs these on one)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get(GPU_TESTS_ON_CPU) == "1":
        return torch.device("cpu")
    pytest.skip("no CUDA device: run `make gpu-check` on a GPU machine")


def demo_lists(folder: Path) -> dict[str, Path]:
    return list_paths(folder / "lists")


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
