"""The benchmark script keeps working (a smoke test at tiny sizes; speed is never asserted)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from .support import ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_smoke(bench, tmp_path):
    rows = bench.main(["--quick", "--variants", "fp32,bf16+channels-last", "--out", str(tmp_path / "results.csv")])
    methods = {row["method"] for row in rows}
    assert "encoded arrays, one gather per batch" in methods and "rasterio, 12 GeoTIFFs per item" in methods
    assert "LMDB + safetensors, one record per item" in methods
    assert "encoded arrays resident on cpu (training.data_on_device)" in methods
    assert {"width 16, batch 8, cpu, fp32", "width 16, batch 8, cpu, bf16+channels-last"} <= methods
    assert "band decoding: direct reader / rasterio" in methods
    assert sum(method.startswith("loader (") for method in methods) == 2
    assert all(row["value"] > 0 for row in rows)
    assert (tmp_path / "results.csv").read_text().startswith("benchmark,method,value,unit")


def test_benchmark_rejects_unknown_variants(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--variants", "fp32,fp8"])
    assert "unknown variant 'fp8'" in capsys.readouterr().err


def test_training_rows_need_torch_alone(tmp_path):
    """A GPU machine may lack the data stack: --training-only runs with rasterio, lmdb and safetensors missing."""
    blocker = (
        "import sys, runpy; sys.modules.update(rasterio=None, lmdb=None, safetensors=None); "
        f"sys.argv = ['run.py', '--quick', '--training-only', '--out', {str(tmp_path / 'r.csv')!r}]; "
        f"runpy.run_path({str(ROOT / 'benchmarks' / 'run.py')!r}, run_name='__main__')"
    )
    subprocess.run([sys.executable, "-c", blocker], check=True, capture_output=True, cwd=tmp_path)
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0] == "benchmark,method,value,unit" and len(lines) > 1
    assert all(line.startswith("train,") for line in lines[1:])


#: What a bare GPU machine lacks: its Python has torch, numpy, pandas, pytest, tqdm, matplotlib and scipy only.
BARE_MACHINE = (
    "import sys; sys.modules.update(rasterio=None, zennit=None, snakemake=None, lmdb=None, pyarrow=None, timm=None)\n"
)


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_step_on_a_bare_machine(tmp_path):
    """`gpu_check.py --smoke`, with the data stack and zennit blocked in every process it starts."""
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "sitecustomize.py").write_text(BARE_MACHINE)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(tmp_path / "bare"), str(ROOT / "src")])}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--out",
                             str(tmp_path / "out")], env=env, capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    outcomes = {test["test"]: test["outcome"] for test in check["tests"]["tests"]}
    assert len(outcomes) == 5 and outcomes.pop("test_lrp_relevance_on_cuda_equals_the_cpus") == "skipped"
    assert set(outcomes.values()) == {"passed"}
    assert {(row["width"], row["variant"]) for row in check["training"]} == {
        (16, "fp32"), (16, "bf16"), (16, "bf16+channels-last")}  # fmt: skip
    assert len(check["loader"]) == 3 and all(row["images_per_s"] > 0 for row in check["loader"])
    assert [row["processes"] for row in check["packing"]] == [1, 2]
    projected = check["projection"]
    assert projected["lrp_seconds_per_model"] is None and "zennit missing" in projected["lrp_note"]
    assert 0 < projected["best_packing"]["gpu_hours"] <= projected["one_job_per_card"]["gpu_hours"]
    assert "## (e) The paper study on this card" in (tmp_path / "out" / "gpu_check.md").read_text()
    timed = {row["architecture"]: row for row in check["architectures"]}
    assert timed["kbranch"]["train_images_per_s"] > 0 and timed["kbranch"]["study_gpu_hours"] > 0
    assert {name for name, row in timed.items() if "skipped" in row} == {"resnet18", "resnet50", "vit_small"}


def test_gpu_check_times_a_timm_backbone(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)
    spec.loader.exec_module(module)
    (row,) = module.architecture_speed("cpu", module.SMOKE, ["resnet18"], 16)
    assert (row["name"], row["variant"]) == ("ResNet-18", "fp32") and row["peak_memory_gib"] is None
    assert row["train_images_per_s"] > 0 and row["forward_images_per_s"] > 0
    # 7 losses × (80 epochs × (training + validation) + one evaluation), at the measured rates.
    images = 7 * (80 * (module.bench.TRAIN_IMAGES / row["train_images_per_s"]
                        + module.bench.VAL_IMAGES / row["forward_images_per_s"])
                  + module.bench.TEST_IMAGES / row["forward_images_per_s"])  # fmt: skip
    assert row["study_gpu_hours"] == pytest.approx(images / 3600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_check_without_cuda_exits_2_and_says_why(capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    assert module.main(["--out", "unused"]) == 2
    assert "no CUDA device here" in capsys.readouterr().err


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def departures():
    return load_script("departures")


def test_departures_smoke(departures, demo_encoded, demo_labels, tmp_path, capsys):
    out = tmp_path / "departures.csv"
    counts = demo_labels / "class_counts.csv"
    common = ["--encoded", str(demo_encoded), "--class-counts", str(counts), "--out", str(out)]
    departures.main([*common, "--items", "wcel", "--seeds", "0", "--epochs", "1", "--width", "4"])
    rows = out.read_text().splitlines()
    assert rows[0].startswith("item,variant,loss,seed") and len(rows) == 3
    assert len(list(out.with_suffix(".cache").glob("*.npz"))) == 2  # both weightings trained once
    departures.main([*common, "--summary"])
    table = capsys.readouterr().out
    assert "| wcel | wcel | positive | 1 | 1 |" in table and "| wcel | wcel | both | 1 | 1 |" in table


def test_departures_old_block_is_the_replaced_pad_then_crop(departures):
    from benloss.training.models import KBranchCNN

    with departures.bn_grid("pad-crop"):
        old = KBranchCNN(width=4)
    assert hasattr(old.branch_60m, "crop1") and not hasattr(KBranchCNN(width=4).branch_60m, "crop1")
    assert old.branch_60m.conv1.padding == (1, 1)


def test_decompression_benchmark_smoke(capsys):
    rows = load_script("decompress").main(["--quick"])
    routes = {row["route"] for row in rows}
    assert {"baseline: tarfile r|gz", "gzip: gzip", "zstd: zstandard stream reader"} <= routes
    members = {row["n"] for row in rows if row["what"] == "walk tar"}
    assert members == {6 * 13}  # every route reads the same 6 patches of 13 files
    assert "baseline/cpu" in capsys.readouterr().out


def test_scale_benchmark_smoke(tmp_path):
    rows = load_script("scale").main(["--quick", "--work", str(tmp_path)])
    steps = {(row["patches"], row["step"]) for row in rows}
    assert {(8, "prepare"), (16, "prepare"), (16, "tarfile + gzip reading once")} <= steps
    assert all(row["peak_rss_mb"] > 0 and row["cpu_s"] > 0 for row in rows)
    assert (tmp_path / "scale.csv").read_text().startswith("patches,archive_mb,step,wall_s,cpu_s,peak_rss_mb")


def test_statistics_benchmark_smoke():
    spec = importlib.util.spec_from_file_location("bench_statistics", ROOT / "benchmarks" / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--quick"])
    assert result["images"] == 630 and result["losses"] == result["seeds"] == 2 and result["replicates"] == 50
    assert 1 < result["blocks"] < 630 and result["total_seconds"] > 0


def test_block_size_benchmark_smoke():
    spec = importlib.util.spec_from_file_location("block_size", ROOT / "benchmarks" / "block_size.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--quick"])
    for archive in ("v2.0", "v1.0"):
        frame = results[archive]
        assert frame.loc[1, "median_patches"] == 1 and (frame.loc[1, frame.columns[2:]] == 1).all()
        assert frame.loc[91, "blocks"] < frame.loc[8, "blocks"] < frame.loc[1, "blocks"]  # scenes, squares, patches


def test_fair_verdict_compares_two_studies_loss_by_loss(tiny_run, tmp_path):
    spec = importlib.util.spec_from_file_location("fair_verdict", ROOT / "benchmarks" / "fair_verdict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.main(["--before", str(tiny_run), "--after", str(tiny_run), "--out", str(tmp_path / "table.md")])
    assert list(table["loss"]) == ["CEL", "FL", "W-CEL", "HAL", "HL", "RL", "SML", "ASL", "ZLPR"]
    metrics = json.loads((tiny_run / "eval" / "kbranch" / "cel" / "seed0" / "metrics.json").read_text())
    before, after = table.set_index("loss").loc["CEL", "own F1"].split(" → ")
    assert before == after == f"{100 * metrics['own_rule']['f1_samples']:.1f}"  # CEL's rule did not change
    assert (tmp_path / "table.md").read_text().startswith("| loss")
