"""bench_train --accuracy: the fp32 and bf16 manual loops trained side by side and compared."""
from __future__ import annotations

import json

from benchmarks.bench_train import main


def test_accuracy_mode_trains_fp32_and_bf16_and_writes_the_comparison(toy_csv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "acc.json"
    assert main(["--recipe", "default", "--data", str(toy_csv), "--accuracy", "--steps", "3", "--batch-size", "8",
                 "--max-length", "32", "--valid", "16", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["benchmark"] == "bench_train_accuracy" and d["valid_reviews"] == 16 and d["samples"] == 24
    assert [r["variant"] for r in d["rows"]] == ["manual fp32 grouped", "manual bf16 grouped",
                                                 "manual bf16 grouped, torch dropout"]
    for r in d["rows"]:
        assert r["samples_per_s"] > 0 and 0 <= r["valid_accuracy"] <= 1 and 0 <= r["valid_macro_f1"] <= 1
    a, b, c = d["rows"]
    assert d["ratios"]["valid accuracy bf16 - fp32 (points)"] == round(100 * (b["valid_accuracy"] - a["valid_accuracy"]), 2)
    assert d["ratios"]["bf16 / fp32 speed"] == round(b["samples_per_s"] / a["samples_per_s"], 2)
    assert d["ratios"]["valid accuracy FastDropout - torch dropout (points)"] == round(
        100 * (b["valid_accuracy"] - c["valid_accuracy"]), 2)
    assert d["provenance"]["command"]


def test_median_row_keeps_the_middle_run_and_every_rate():
    from benchmarks.bench_train import median_row

    runs = [{"variant": "v", "samples_per_s": s, "wall_s": w} for s, w in ((5.9, 1), (4.7, 2), (4.8, 3))]
    row = median_row(runs)
    assert row["samples_per_s"] == 4.8 and row["wall_s"] == 3
    assert row["samples_per_s_each"] == [5.9, 4.7, 4.8]
    assert median_row(runs[:2])["samples_per_s"] == 4.7       # even count: the lower middle


def test_speed_mode_runs_each_variant_in_its_own_process_and_takes_medians(toy_csv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "speed.json"
    assert main(["--recipe", "default", "--data", str(toy_csv), "--steps", "2", "--batch-size", "4",
                 "--max-length", "32", "--valid", "8", "--repeats", "2", "--only", "manual fp32 padded,manual bf16 grouped",
                 "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["repeats"] == 2 and d["valid_reviews"] == 8 and d["samples"] == 8
    assert [r["variant"] for r in d["rows"]] == ["manual fp32 padded", "manual bf16 grouped"]
    for r in d["rows"]:
        assert len(r["samples_per_s_each"]) == 2 and r["samples_per_s"] == min(r["samples_per_s_each"])
    fp32, bf16 = (r["samples_per_s"] for r in d["rows"])
    assert d["ratios"]["manual bf16 grouped / manual fp32 padded"] == round(bf16 / fp32, 2)
