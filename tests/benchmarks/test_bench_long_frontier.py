"""bench-long and bench-frontier: the costs they count from a graph, and a small real run of bench-long."""
from __future__ import annotations

import json

import pytest

from benchmarks.bench_frontier import PEAK_OPS_PER_CYCLE, bound, graph_costs, peak_family, review_ops
from tests.benchmarks.helpers import tiny_bundle, write_reviews_gz


def test_graph_costs_count_the_weights_of_an_exported_bert(tmp_path):
    bundle = tiny_bundle(tmp_path / "b")      # 2 layers, hidden 32, intermediate 64, 2 labels; not fused
    c = graph_costs(bundle / "model.onnx")
    per_layer = 4 * 32 * 32 + 2 * 32 * 64      # Q, K, V, output; the two feed-forward matmuls
    assert c["fp32_per_token"] == 2 * per_layer and c["int8_per_token"] == 0
    assert c["activation_matmuls"] == 4 and c["hidden"] == 32   # QK^T and PV in each layer
    assert c["per_review"] == 32 * 32 + 32 * 2                  # pooler and classifier, on [CLS] only
    ops = review_ops(c, [10, 30])
    by_length = [2 * (n * 2 * per_layer + 4 * n * n * 32 + c["per_review"]) for n in (10, 30)]
    assert ops["fp32"] == pytest.approx(sum(by_length) / 2) and ops["int8"] == 0
    assert review_ops(c, [10], all_fp32=True)["fp32"] == review_ops(c, [10])["fp32"]


def test_the_bound_is_the_time_each_kind_of_operation_takes_at_peak():
    peak = PEAK_OPS_PER_CYCLE["avx2"]
    ops = {"int8": 64e9, "fp32": 32e9}           # one second each on one core at 1 GHz
    assert bound(ops, peak, cores=1, ghz=1.0) == pytest.approx(0.5)
    assert bound(ops, peak, cores=2, ghz=2.0) == pytest.approx(2.0)
    assert peak_family(["avx2", "fma"], "AMD EPYC") == "avx2"
    assert peak_family(["avx2", "avx512f", "avx512_vnni"], "AMD EPYC 9R14") == "zen4-avx512-vnni"
    assert peak_family(["avx2", "avx512f", "avx512_vnni", "avx512_vp2intersect"], "AMD EPYC") == "zen5-avx512-vnni"
    assert peak_family(["avx2", "avx512f", "avx512_vnni"], "Intel(R) Xeon(R)") == "intel-avx512-vnni"


def test_bench_long_reports_each_setting_by_length_bucket(tmp_path):
    from benchmarks.bench_long import main

    bundle = tiny_bundle(tmp_path / "b")     # max_length 48
    texts = ["a fine film", "dull and long " * 5] + [" ".join(f"w{i}" for i in range(k)) for k in (300, 500, 900)]
    data = write_reviews_gz(tmp_path / "t.csv.gz", texts)
    out = tmp_path / "long.json"
    main(["--model", str(bundle), "--data", str(data), "--n", "0", "--windows", "1", "3", "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["reviews"] == 5 and set(r["results"]) == {"1", "3"}
    one, three = r["results"]["1"], r["results"]["3"]
    assert one["model_inputs"] == 5 and three["model_inputs"] == 2 + 3 * 3   # the 3 long texts: 3 windows
    assert sum(r["length_buckets"].values()) == 5
    assert one["by_length"]["1-256"]["reviews"] == 2 and three["by_length"]["1-256"] == one["by_length"]["1-256"]
    assert three["speed_vs_first"] > 0 and (tmp_path / "long.png").stat().st_size > 10_000
    assert r["provenance"]["machine"]["isa"] is not None
