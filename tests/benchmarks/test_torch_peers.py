"""The PyTorch peers of bench-edge and bench-frontier: when the bf16 ones run, what they score, and
how each tier is set against the strongest of them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import torch_peers
from benchmarks.torch_peers import BF16_EMULATED, BF16_OFF, bf16_skip_reason, skip_reason, vs_strongest_peer
from tests.benchmarks.helpers import tiny_bundle_and_peer_model, write_reviews_gz

TEXTS = ["A fine film.", "Dull, long and badly acted " * 12, "Loved it: the cast, the music, the ending " * 4,
         "Worst", "It was fine, I guess; nothing special but not bad either. " * 20, "Superb acting and a moving story.",
         "Boring " * 30, "great", "I hated the plot but the photography was wonderful " * 3, "meh " * 70,
         "An excellent, brilliant, fun film from start to finish.", "Terrible. I walked out after twenty minutes."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(tiny bundle, HF model folder for the peers: its labels differ by text by clear margins)."""
    return tiny_bundle_and_peer_model(tmp_path_factory.mktemp("peers"), TEXTS)


def test_the_strongest_peer_is_the_fastest_measured_one_and_each_tier_is_set_against_it():
    got = vs_strongest_peer({"edge_int8": 145.0, "edge_fp32": 50.0},
                            {"torch_pipeline": 35.3, "torch_pipeline_bf16": 106.5, "torch_sorted_bf16": 142.1})
    assert got["strongest_pytorch_peer"] == "torch_sorted_bf16"
    assert got["strongest_pytorch_peer_reviews_per_s"] == 142.1
    assert got["vs_strongest_pytorch_peer"] == pytest.approx({"edge_int8": 145.0 / 142.1, "edge_fp32": 50.0 / 142.1})
    assert got["behind_strongest_pytorch_peer"] == ["edge_fp32"]
    only_fp32 = vs_strongest_peer({"default": 70.6}, {"torch_pipeline": 35.3})
    assert only_fp32["strongest_pytorch_peer"] == "torch_pipeline"
    assert only_fp32["vs_strongest_pytorch_peer"]["default"] == pytest.approx(2.0)
    assert vs_strongest_peer({"default": 1.0}, {})["strongest_pytorch_peer"] is None


def test_bf16_peers_run_only_where_the_cpu_computes_bf16_or_when_asked(monkeypatch):
    assert bf16_skip_reason("auto", ["avx2", "avx512f", "avx512_vnni"]) == BF16_EMULATED
    assert bf16_skip_reason("auto", ["avx2", "avx512f", "avx512_bf16"]) is None
    assert bf16_skip_reason("auto", ["avx2", "amx_bf16"]) is None
    assert bf16_skip_reason("on", ["avx2"]) is None
    assert bf16_skip_reason("off", ["avx512_bf16"]) == BF16_OFF
    monkeypatch.setattr(torch_peers, "cpu_has_native_bf16", lambda isa=None: False)
    assert skip_reason("torch_sorted_bf16", "auto") == BF16_EMULATED
    assert skip_reason("torch_pipeline", "auto") is None          # the fp32 peer always runs


def test_the_length_sorted_peer_gives_each_text_its_own_result_in_input_order(tiny):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from review_classifier.shared.bundle import load_bundle
    from review_classifier.training.data.text import encode_texts

    bundle, torch_dir = tiny
    policy = load_bundle(bundle)[0].policy
    tokenizer = AutoTokenizer.from_pretrained(torch_dir)
    model = AutoModelForSequenceClassification.from_pretrained(torch_dir).eval()
    lengths = [len(x) for x in encode_texts(TEXTS, tokenizer, policy)]
    assert lengths != sorted(lengths)                              # sorting does reorder them
    batched = torch_peers.sorted_logits(model, tokenizer, TEXTS, policy, batch_size=3)
    alone = np.concatenate([torch_peers.sorted_logits(model, tokenizer, [t], policy, batch_size=1) for t in TEXTS])
    np.testing.assert_allclose(batched, alone, atol=1e-4)
    assert len({round(float(x), 3) for x in batched[:, 1] - batched[:, 0]}) == len(TEXTS)   # distinct rows
    assert 0 < batched.argmax(-1).mean() < 1                       # both labels
    reversed_ = torch_peers.sorted_logits(model, tokenizer, TEXTS[::-1], policy, batch_size=3)
    np.testing.assert_allclose(reversed_[::-1], batched, atol=1e-4)
    bf16 = torch_peers.sorted_logits(model.to(torch.bfloat16), tokenizer, TEXTS, policy, batch_size=3)
    np.testing.assert_allclose(bf16, batched, atol=0.05 * np.abs(batched).max())   # bf16: ~3 significant digits
    assert (bf16.argmax(-1) == batched.argmax(-1)).mean() >= 0.75  # a near tie may flip, not most labels


def _bench_edge(tiny, tmp_path, *extra):
    from benchmarks.bench_edge import main

    bundle, torch_dir = tiny
    data = write_reviews_gz(tmp_path / "t.csv.gz", TEXTS)
    out = tmp_path / "edge.json"
    main(["--int8-bundle", str(bundle), "--fp32-bundle", str(bundle), "--torch-model", str(torch_dir),
          "--data", str(data), "--n", str(len(TEXTS)), "--repeats", "1", "--threads", "1", "--skip-install-size",
          "--output", str(out), *extra])
    return json.loads(out.read_text())


def test_bench_edge_runs_the_bf16_peers_when_forced_and_they_label_as_the_fp32_peer(tiny, tmp_path):
    r = _bench_edge(tiny, tmp_path, "--bf16-peers", "on")
    runs = r["runs"]
    assert {"edge_int8", "edge_fp32", "torch_pipeline", "torch_pipeline_bf16", "torch_sorted_bf16"} <= set(runs)
    assert 0 < runs["torch_pipeline"]["accuracy"] < 1              # all labelled positive: the model says both
    for k in ("torch_pipeline_bf16", "torch_sorted_bf16"):
        assert runs[k]["dtype"] == "bf16" and runs[k]["peak_rss_mb"] > 0
        assert runs[k]["agreement_with_torch"] >= 0.75             # bf16 may flip a near tie, not most labels
        assert r["pytorch_peers"][k]["process"] == "its own" and "skipped" not in r["pytorch_peers"][k]
    peers = {k: runs[k]["reviews_per_s"] for k in ("torch_pipeline", "torch_pipeline_bf16", "torch_sorted_bf16")}
    best = max(peers, key=peers.get)
    assert r["strongest_pytorch_peer"] == best
    assert r["vs_strongest_pytorch_peer"]["edge_int8"] == pytest.approx(runs["edge_int8"]["reviews_per_s"] / peers[best])
    assert "int8 ahead of the strongest PyTorch peer" in r["goals"]
    assert r["int8_speedup_vs_torch"] == pytest.approx(runs["edge_int8"]["reviews_per_s"] / peers["torch_pipeline"])


def test_bench_edge_records_why_the_bf16_peers_were_skipped(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(torch_peers, "cpu_has_native_bf16", lambda isa=None: False)
    r = _bench_edge(tiny, tmp_path)
    assert set(r["runs"]) == {"edge_int8", "edge_fp32", "torch_pipeline"}
    for k in ("torch_pipeline_bf16", "torch_sorted_bf16"):
        assert r["pytorch_peers"][k]["skipped"] == BF16_EMULATED and r["pytorch_peers"][k]["dtype"] == "bf16"
    assert "skipped" not in r["pytorch_peers"]["torch_pipeline"] and r["bf16_peers"] == "auto"
    assert r["cpu_native_bf16"] is False
    assert r["strongest_pytorch_peer"] == "torch_pipeline"
    assert r["vs_strongest_pytorch_peer"]["edge_fp32"] == pytest.approx(r["fp32_speedup_vs_torch"])


def _bench_frontier(tiny, tmp_path, *extra):
    from benchmarks.bench_frontier import main

    bundle, torch_dir = tiny
    data = write_reviews_gz(tmp_path / "t.csv.gz", TEXTS)
    train = write_reviews_gz(tmp_path / "train.csv.gz", TEXTS * 2, labels=["positive", "negative"] * len(TEXTS))
    out = tmp_path / "frontier.json"
    r = main(["--tier", f"default={bundle}", "--windows", "--torch-model", str(torch_dir), "--data", str(data),
              "--train", str(train), "--n", str(len(TEXTS)), "--threads", "1", "--out", str(out), *extra])
    assert json.loads(out.read_text())["pytorch_peers"] == r["pytorch_peers"]
    assert out.with_suffix(".png").stat().st_size > 10_000
    return r


@pytest.mark.slow
def test_bench_frontier_shows_every_peer_against_each_tier(tiny, tmp_path):
    r = _bench_frontier(tiny, tmp_path, "--bf16-peers", "on")
    rows = r["rows"]
    assert {"hf pipeline (default model, fp32)", "hf pipeline (default model, bf16)",
            "pytorch bf16, length-sorted batches (default model)"} <= set(rows)
    assert rows["hf pipeline (default model, bf16)"]["dtype"] == "bf16"
    assert "share_of_bound" not in rows["pytorch bf16, length-sorted batches (default model)"]
    peers = {k: v["reviews_per_s"] for k, v in rows.items() if "peer" in v}
    assert r["strongest_pytorch_peer"] == max(peers, key=peers.get)
    assert rows["default"]["speed_vs_strongest_pytorch_peer"] == pytest.approx(
        rows["default"]["reviews_per_s"] / max(peers.values()))
    assert rows["default"]["speed_vs_hf_pipeline"] == pytest.approx(
        rows["default"]["reviews_per_s"] / rows["hf pipeline (default model, fp32)"]["reviews_per_s"])


@pytest.mark.slow
def test_bench_frontier_records_why_the_bf16_peers_were_skipped(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(torch_peers, "cpu_has_native_bf16", lambda isa=None: False)
    r = _bench_frontier(tiny, tmp_path)
    assert [k for k, v in r["rows"].items() if "peer" in v] == ["hf pipeline (default model, fp32)"]
    assert r["pytorch_peers"]["hf pipeline (default model, bf16)"]["skipped"] == BF16_EMULATED
    assert r["pytorch_peers"]["pytorch bf16, length-sorted batches (default model)"]["skipped"] == BF16_EMULATED
    assert r["strongest_pytorch_peer"] == "hf pipeline (default model, fp32)" and r["cpu_native_bf16"] is False


def test_a_peer_process_reports_its_own_peak_rss_not_the_benchmark_s():
    import subprocess
    import sys

    held = bytearray(600 * 2**20)
    held[::4096] = b"\1" * len(held[::4096])                       # touched: 600 MB resident here
    code = "from benchmarks.torch_peers import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 cwd=torch_peers.REPO).stdout)
    assert 0 < child < 300 and len(held)
