"""data.report: the dataset report's numbers."""
from __future__ import annotations

import pytest

from review_classifier.training.data.report import dataset_report, format_report
from review_classifier.training.data.reviews import Reviews, data_fingerprint
from review_classifier.training.data.tokenized import tokenize_splits


def test_report_numbers(cfg, tokenizer):
    cfg.max_length = 8
    splits = {"train": Reviews(["a", "a b c", "a b c d e f g h i j"], [0, 1, 1], "mem"),
              "valid": Reviews(["b c"], [0], "mem")}
    report = dataset_report(splits, tokenize_splits(splits, tokenizer, cfg), cfg)
    train = report["splits"]["train"]
    assert train["rows"] == 3 and train["classes"] == {"negative": 1, "positive": 2}
    assert train["class_ratio"] == {"negative": pytest.approx(1 / 3), "positive": pytest.approx(2 / 3)}
    # token counts with [CLS] and [SEP]: 3, 5, 12; numpy's linear percentiles over them
    assert train["tokens"] == {"p50": 5.0, "p90": pytest.approx(10.6), "p95": pytest.approx(11.3),
                               "p99": pytest.approx(11.86), "max": 12, "mean": pytest.approx(20 / 3)}
    assert train["truncated"] == 1 and train["truncated_share"] == pytest.approx(1 / 3)
    assert report["splits"]["valid"]["truncated_share"] == 0.0
    assert report["fingerprint"] == data_fingerprint(splits)
    text = format_report(report)
    assert "33.3%" in text and "66.7%" in text and text.count("\n") == 3
    bare = dataset_report(splits, None, cfg)
    assert "tokens" not in bare["splits"]["train"]
