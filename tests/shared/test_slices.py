"""shared.slices: slices by length, truncation and column, each with its Wilson interval."""
from __future__ import annotations

import numpy as np
import pytest

from review_classifier.shared.metrics import classification_report
from review_classifier.shared.slices import (SMALL_SLICE, format_slices, length_bucket, length_edges, slice_report,
                                             wilson_interval)
from review_classifier.shared.text import TextPolicy, is_cut, window_starts, windows_needed

LABELS = ["negative", "positive", "neutral"]


def test_wilson_interval_known_values():
    # Wilson (1927) score interval; reference values from the closed form, e.g. Newcombe (1998), table I
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    lo, hi = wilson_interval(900, 1000)
    assert lo < 0.9 < hi and hi - lo < 0.04


def test_length_buckets_follow_max_length():
    edges = length_edges(256)
    assert edges == [64, 128, 256, 512, 1024]
    assert [length_bucket(n, edges) for n in (1, 64, 65, 256, 257, 1024, 1025)] == \
        ["1-64", "1-64", "65-128", "129-256", "257-512", "513-1024", ">1024"]


def test_slice_rows_match_the_metrics_on_each_part():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 600), rng.integers(0, 3, 600)
    tokens = rng.integers(1, 700, 600)
    shop = rng.choice(["books", "toys", "garden"], 600, p=[0.6, 0.3, 0.1])
    r = slice_report(y, p, LABELS, tokens=tokens, truncated=tokens > 256, max_length=256, columns={"shop": shop})
    assert r["n"] == 600 and sum(row["n"] for row in r["by_length"]) == 600
    for row in r["by_length"]:
        lo, hi = (int(x) for x in row["slice"].split("-")) if "-" in row["slice"] else (1025, 10**9)
        m = (tokens >= lo) & (tokens <= hi)
        ref = classification_report(y[m].tolist(), p[m].tolist(), LABELS)
        assert row["n"] == m.sum() and row["accuracy"] == pytest.approx(ref["accuracy"])
        assert row["macro_f1"] == pytest.approx(ref["macro_f1"])
        assert row["ci95"][0] <= row["accuracy"] <= row["ci95"][1]
        assert row["small"] == (row["n"] < SMALL_SLICE)
    assert [row["slice"] for row in r["by_truncation"]] == ["read whole", "truncated"]
    assert r["by_truncation"][1]["n"] == int((tokens > 256).sum())
    shops = r["by_column"]["shop"]
    assert [row["slice"] for row in shops] == ["books", "toys", "garden"]     # largest first
    assert any(row["small"] for row in shops) and "*" in format_slices(r)


def test_a_one_class_slice_is_scored_on_its_own_labels():
    from sklearn.metrics import f1_score

    y, p = [0, 0, 0, 1, 1], [0, 0, 0, 1, 0]
    rows = slice_report(y, p, LABELS, columns={"stars": ["1", "1", "1", "5", "5"]})["by_column"]["stars"]
    one, five = {r["slice"]: r for r in rows}["1"], {r["slice"]: r for r in rows}["5"]
    assert one["accuracy"] == 1.0 and one["macro_f1"] == 1.0
    assert five["macro_f1"] == pytest.approx(f1_score([1, 1], [1, 0], average="macro"))


def test_a_column_with_many_values_keeps_the_largest():
    y = p = [0] * 100
    values = ["a"] * 40 + [f"v{i}" for i in range(60)]
    rows = slice_report(y, p, LABELS, columns={"c": values})["by_column"]["c"]
    assert rows[0]["slice"] == "a" and rows[0]["n"] == 40
    assert len(rows) == 31 and {"(other)"} <= {r["slice"] for r in rows}


def test_is_cut_agrees_with_the_windows_the_scorer_reads():
    one, two = TextPolicy(max_length=12), TextPolicy(max_length=12, windows=2, window_overlap=2)
    assert not is_cut(10, 10, one) and is_cut(11, 10, one)
    assert windows_needed(18, 10, two) == 2 and len(window_starts(18, 10, two)) == 2 and not is_cut(18, 10, two)
    assert windows_needed(40, 10, two) > 2 and is_cut(40, 10, two)
