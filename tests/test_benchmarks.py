"""The benchmark script keeps working (a smoke test at tiny sizes; speed is never asserted)."""

import importlib.util

from .conftest import ROOT


def test_benchmark_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "run.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--out", str(tmp_path / "results.csv")])
    methods = {row["method"] for row in rows}
    assert "encoded arrays, one gather per batch" in methods and "rasterio, 12 GeoTIFFs per item" in methods
    assert "LMDB + safetensors, one record per item" in methods
    assert all(row["value"] > 0 for row in rows)
    assert (tmp_path / "results.csv").read_text().startswith("benchmark,method,value,unit")
