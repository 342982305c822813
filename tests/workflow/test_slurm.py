"""The SLURM profile on a real single-node SLURM cluster: GPU requests, equal results, resubmission and resume."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benloss.training.train import TIMING_COLUMNS

from ..support import ROOT, TINY, require_tool
from .slurm_cluster import SlurmCluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the test cluster's daemons must run as root")
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
SLURM_LOSSES = ("sml", "cel")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    for tool in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel"):
        require_tool(tool, "the SLURM tests need Debian's slurm-wlm and munge packages")
    running = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    yield running
    running.stop()


def slurm_snakemake(cluster: SlurmCluster, *args: str, timeout: int = 1200) -> subprocess.Popen:
    """Snakemake through the profile; `timeout -k` because Snakemake ignores a lone SIGTERM while it waits."""
    command = ["timeout", "-k", "20", str(timeout), sys.executable, "-m", "snakemake", "--profile", str(PROFILE),
               "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
               "--seconds-between-status-checks", "2", *args]  # fmt: skip
    subprocess.run([sys.executable, "-m", "snakemake", "--unlock", *args[:2]], cwd=ROOT, env=cluster.env,
                   capture_output=True)  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


def write_config(path: Path, run: str, **training) -> Path:
    """The tiny config as run ``run``, its results beside ``path`` (never in the checkout's results/)."""
    config = yaml.safe_load(TINY.read_text())
    config["run"] = run
    config["results"] = str(path.parent / "results")
    config["training"] |= {"gpu": True} | training
    config["model"]["architectures"] = ["kbranch"]  # the tiny run's first: one SLURM job per loss and step
    config["landscape"]["snapshots"] = 0  # no landscape jobs: they change no training result
    path.write_text(yaml.safe_dump(config))
    return path


def test_study_through_slurm_equals_the_local_run(cluster, tiny_run, tmp_path):
    # two losses of the tiny run's nine (every job kind, a third of the jobs: each SLURM job pays its start-up)
    config = write_config(tmp_path / "slurm.yaml", "slurm", losses=list(SLURM_LOSSES))
    process = slurm_snakemake(cluster, "--configfile", str(config), "--jobs", "4")
    output, _ = process.communicate(timeout=1300)
    assert process.returncode == 0, output[-5000:]
    results = tmp_path / "results" / "slurm"
    for loss in SLURM_LOSSES:
        ours = pd.read_csv(results / "models" / "kbranch" / loss / "seed0" / "history.csv").drop(
            columns=list(TIMING_COLUMNS)
        )
        local = pd.read_csv(tiny_run / "models" / "kbranch" / loss / "seed0" / "history.csv").drop(
            columns=list(TIMING_COLUMNS)
        )
        pd.testing.assert_frame_equal(ours, local)
        log = (results / "logs" / "train" / "kbranch" / f"{loss}_seed0.log").read_text()
        assert "CUDA_VISIBLE_DEVICES=0" in log  # SLURM allocated the (fake) GPU to the job
    jobs = subprocess.run(["scontrol", "show", "jobs", "-o"], env=cluster.env, capture_output=True, text=True).stdout
    train_jobs = [line for line in jobs.splitlines() if "rule_train" in line or "_train_" in line or "train" in line]
    gpu_jobs = [line for line in train_jobs if "gres:gpu:1" in line or "gres/gpu" in line]
    assert len(gpu_jobs) >= len(SLURM_LOSSES), jobs[-3000:]
    slurm_logs = list((ROOT / ".snakemake" / "slurm_logs").glob("rule_train/**/*.log"))
    assert slurm_logs, "the plugin keeps a log per submitted job"
    assert (results / "report.html").exists()


def test_cancelled_training_is_resubmitted_and_resumes(cluster, tmp_path):
    config = write_config(tmp_path / "fault.yaml", "slurmfault", epochs=20, retries=2, losses=["cel"], batch_size=4)
    run = tmp_path / "results" / "slurmfault"
    target = str(run / "models" / "kbranch" / "cel" / "seed0" / "model.pt")
    process = slurm_snakemake(cluster, "--configfile", str(config), "--jobs", "2", target)
    checkpoint = run / "models" / "kbranch" / "cel" / "seed0" / "checkpoint.pt"
    deadline = time.time() + 400
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
    assert checkpoint.exists(), "the training job never finished an epoch"
    queue = subprocess.run(["squeue", "-h", "-o", "%i %j"], env=cluster.env, capture_output=True, text=True).stdout
    job_ids = [line.split()[0] for line in queue.splitlines() if line.strip()]
    assert job_ids, queue
    subprocess.run(["scancel", *job_ids], env=cluster.env, check=True)
    output, _ = process.communicate(timeout=1300)
    assert process.returncode == 0, output[-5000:]
    log = (run / "logs" / "train" / "kbranch" / "cel_seed0.log").read_text()
    resumed = re.search(r"resuming from .*checkpoint\.pt after epoch (\d+)", log)
    assert resumed and int(resumed.group(1)) >= 1, log[-3000:]
    history = pd.read_csv(run / "models" / "kbranch" / "cel" / "seed0" / "history.csv")
    assert list(history["epoch"]) == list(range(1, 21))
