"""profile_edge: operator shares, the int8 product rate and the attention core's share from a profile."""
from __future__ import annotations

import json

import pytest

from benchmarks.profile_edge import int8_macs, main, node_events, summarise


def node(op, dur, ts, shapes):
    return {"cat": "Node", "name": f"{op}_1_kernel_time", "ts": ts, "dur": dur,
            "args": {"op_name": op, "input_type_shape": [{"float": s} for s in shapes]}}


def test_int8_products_count_their_multiply_accumulates_from_the_shapes():
    # DynamicQuantizeMatMul: A [1, 256, 384], per-channel scales [1536] -> 256 x 384 x 1536
    assert int8_macs("DynamicQuantizeMatMul", node("x", 0, 0, [[1, 256, 384], [1536], [1536], [1536]])["args"]) \
        == 256 * 384 * 1536
    # QAttention: its Q/K/V projection, A [1, 256, 384], bias [1152]
    assert int8_macs("QAttention", node("x", 0, 0, [[1, 256, 384], [1152], [], []])["args"]) == 256 * 384 * 1152
    assert int8_macs("BiasGelu", node("x", 0, 0, [[1, 256, 1536], [1536]])["args"]) == 0


def test_summary_splits_qattention_into_projection_and_attention_core():
    ffn = 256 * 384 * 1536                                   # MACs of one DynamicQuantizeMatMul
    qkv = 256 * 384 * 1152
    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 10},           # the warm-up run
              node("DynamicQuantizeMatMul", 99999, 5, [[1, 256, 384], [1536]]),      # inside it: left out
              {"cat": "Session", "name": "model_run", "ts": 20, "dur": 10_000},
              node("DynamicQuantizeMatMul", ffn / 200e3, 30, [[1, 256, 384], [1536]]),   # 200 GMAC/s
              node("QAttention", qkv / 200e3 + 1000, 40, [[1, 256, 384], [1152]]),       # + 1 ms of core
              node("BiasGelu", 500, 50, [[1, 256, 1536], [1536]])]
    kept = node_events(events, warmup=1)
    assert len(kept) == 3
    s = summarise(kept, runs=1)
    total = ffn / 200e3 + qkv / 200e3 + 1000 + 500
    assert s["int8_gemm_gmac_per_s"] == pytest.approx(200.0, abs=0.1)
    assert s["attention_core_share"] == pytest.approx(1000 / total, abs=1e-3)
    assert s["attention_core_gflop_per_s"] == pytest.approx(2 * 2 * 256 * 256 * 384 / 1000 / 1e3, rel=1e-3)
    assert list(s["op_share"]) == ["QAttention", "DynamicQuantizeMatMul", "BiasGelu"]
    assert sum(s["op_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert s["ms_per_review"] == pytest.approx(total / 1e3, abs=0.01)


def test_profiles_a_bundle_end_to_end(tmp_path):
    from tests.benchmarks.helpers import tiny_bundle, write_reviews_gz

    bundle = tiny_bundle(tmp_path / "bundle")
    data = write_reviews_gz(tmp_path / "test.csv.gz", [" ".join(["a long review of a film"] * (10 + i))
                                                       for i in range(12)])
    out = tmp_path / "profile.json"
    main(["--bundle", str(bundle), "--data", str(data), "--reviews", "4", "--warmup", "2", "--out", str(out)])
    d = json.loads(out.read_text())
    assert d["tokens"] == 48 and d["reviews"] == 4 and d["ms_per_review"] > 0
    assert sum(d["op_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert "MatMul" in d["op_share"] or "Attention" in d["op_share"]      # an fp32 graph
    assert d["int8_gemm_gmac_per_s"] is None and d["attention_core_share"] is None
    assert d["provenance"]["command"]
