"""benchmarks.baseline_tfidf on toy reviews: learns, uses the training splits, records provenance."""
from __future__ import annotations

import hashlib

import pytest

from tests.conftest import write_toy_csv
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.data.splits import load_splits

pytest.importorskip("sklearn")
from benchmarks.baseline_tfidf import run_baseline  # noqa: E402


def test_baseline_on_toy_reviews(tmp_path):
    train = write_toy_csv(tmp_path / "train.csv", 300, seed=0)
    test = write_toy_csv(tmp_path / "test.csv", 100, seed=1)
    cfg = TrainConfig(data=str(train), test_data=str(test), cache_dir=str(tmp_path / "cache"))
    report = run_baseline(cfg)
    r = report["results"]
    assert r["test"]["accuracy"] >= 0.9 and r["test"]["rows"] == 100
    assert r["valid"]["rows"] == 30 and 0 <= r["valid"]["accuracy"] <= 1
    assert report["splits"] == {k: len(v) for k, v in load_splits(cfg).items()} == {"train": 270, "valid": 30,
                                                                                    "test": 100}
    data = report["provenance"]["data"]
    assert data["train"]["sha256"] == hashlib.sha256(train.read_bytes()).hexdigest()
    assert data["test"]["path"] == str(test.resolve())
    assert report["provenance"]["machine"]["cpus"] >= 1
