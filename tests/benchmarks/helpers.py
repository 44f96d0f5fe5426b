"""Inputs the benchmark tests share: a tiny random bundle and a gzipped IMDB-shaped CSV."""
from __future__ import annotations

import csv
import gzip
from pathlib import Path


def tiny_bundle(folder: Path) -> Path:
    from tests.edge.conftest import export_bundle

    export_bundle(folder, ["negative", "positive"], ["input_ids", "attention_mask"])
    return folder


def write_reviews_gz(path: Path, texts: list[str], label: str = "positive") -> Path:
    """review,sentiment rows, gzipped, as ../shared/data/imdb/test.csv.gz is laid out."""
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        w.writerows([t, label] for t in texts)
    return path
