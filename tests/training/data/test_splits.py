"""data.splits: stratified, deterministic, disjoint splits; reduce_ratio; dedupe; split_csv."""
from __future__ import annotations

import csv
from collections import Counter

import pytest

from review_classifier.shared.errors import ClassifierError
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.data.sources import load_reviews
from review_classifier.training.data.reviews import Reviews, data_fingerprint
from review_classifier.training.data.splits import load_splits, reduce_reviews, split_csv, split_reviews
from tests.training.data.builders import balanced_rows, write_csv


def test_class_too_small_to_stratify(tmp_path):
    cfg = TrainConfig(labels=["a", "b", "c"], label_aliases={}, cache_dir=str(tmp_path / "c"))
    path = write_csv(tmp_path / "small.csv", [["t1", "a"], ["t2", "a"], ["t3", "b"], ["t4", "b"], ["t5", "c"]])
    r = load_reviews(str(path), cfg)
    with pytest.raises(ClassifierError, match="class 'c' has only 1 row") as e:
        split_reviews(r, 0.2, seed=0)
    assert str(path) in str(e.value)


def test_split_stratified_deterministic_disjoint():
    labels = [0] * 100 + [1] * 120 + [2] * 80
    r = Reviews([f"text {i}" for i in range(300)], labels, "mem", ("a", "b", "c"))
    rest, held = split_reviews(r, 0.15, seed=7)
    assert len(held) == round(0.15 * 300) and len(rest) + len(held) == 300
    for c, n in Counter(labels).items():
        assert abs(Counter(held.labels)[c] - 0.15 * n) <= 1
    assert not set(rest.texts) & set(held.texts)
    assert set(rest.texts) | set(held.texts) == set(r.texts)
    assert all(int(t.split()[1]) in range(300) and labels[int(t.split()[1])] == y
               for t, y in zip(held.texts, held.labels))
    again = split_reviews(r, 0.15, seed=7)
    assert again[0].texts == rest.texts and again[1].texts == held.texts
    assert split_reviews(r, 0.15, seed=8)[1].texts != held.texts
    # output order is shuffled, so a prefix of a label-sorted source is not one class
    assert len(set(held.labels[:10])) > 1


def test_split_size_zero_and_reduce():
    r = Reviews([f"t{i}" for i in range(40)], [i % 2 for i in range(40)], "mem")
    rest, held = split_reviews(r, 0.0, seed=0)
    assert len(rest) == 40 and len(held) == 0
    small = reduce_reviews(r, 0.25, seed=3)
    assert Counter(small.labels) == {0: 5, 1: 5}
    assert reduce_reviews(r, 1.0, seed=3) is r
    # at least one row per class, however small the ratio
    assert Counter(reduce_reviews(r, 0.001, seed=3).labels) == {0: 1, 1: 1}


def test_load_splits_from_one_file(tmp_path, cfg):
    cfg.data = str(write_csv(tmp_path / "all.csv", balanced_rows(200)))
    cfg.valid_size, cfg.test_size = 0.1, 0.2
    s = load_splits(cfg)
    assert {k: len(v) for k, v in s.items()} == {"train": 144, "valid": 16, "test": 40}
    assert all(Counter(v.labels)[0] == Counter(v.labels)[1] for v in s.values())
    texts = [set(v.texts) for v in s.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert data_fingerprint(load_splits(cfg)) == data_fingerprint(s)
    cfg.seed = 1
    assert data_fingerprint(load_splits(cfg)) != data_fingerprint(s)


def test_load_splits_test_file_and_reduce_ratio(tmp_path, cfg):
    cfg.data = str(write_csv(tmp_path / "train.csv", balanced_rows(200)))
    cfg.test_data = str(write_csv(tmp_path / "test.csv", balanced_rows(100, tag="t")))
    cfg.valid_size, cfg.reduce_ratio = 0.1, 0.5
    s = load_splits(cfg)
    assert {k: len(v) for k, v in s.items()} == {"train": 90, "valid": 10, "test": 50}
    assert {k: Counter(v.labels)[1] for k, v in s.items()} == {"train": 45, "valid": 5, "test": 25}
    assert s["test"].source == cfg.test_data


def test_dedupe(tmp_path, cfg):
    rows = balanced_rows(20) + [["review r3 about   film 8", "positive"], ["review r4 about film 2", "negative"]]
    cfg.data = str(write_csv(tmp_path / "train.csv", rows))
    cfg.test_data = str(write_csv(tmp_path / "test.csv", balanced_rows(10, tag="t") + [rows[0], ["fresh", "positive"]]))
    cfg.valid_size = 0.2
    plain = load_splits(cfg)
    assert len(plain["train"]) + len(plain["valid"]) == 22 and len(plain["test"]) == 12
    cfg.dedupe = True
    s = load_splits(cfg)
    assert len(s["train"]) + len(s["valid"]) == 20  # the whitespace variant of r3 and the copy of r4
    assert len(s["test"]) == 11  # rows[0] is a train text
    assert rows[0][0] not in s["test"].texts and "fresh" in s["test"].texts


def test_split_csv_writes_the_load_splits_splits(tmp_path, cfg):
    src = tmp_path / "all.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "review", "sentiment"])
        for i, (text, label) in enumerate(balanced_rows(101)):
            w.writerow([i, text, label])
    out = split_csv(src, tmp_path / "out", valid_size=0.1, test_size=0.2, seed=5,
                    text_column="review", label_column="sentiment", cfg=cfg)
    assert set(out) == {"train", "valid", "test"}
    rows = {k: list(csv.DictReader(open(p, newline="", encoding="utf-8"))) for k, p in out.items()}
    assert sum(len(v) for v in rows.values()) == 101
    assert {k: len(v) for k, v in rows.items()} == {"train": 73, "valid": 8, "test": 20}
    assert all(list(r[0]) == ["id", "review", "sentiment"] for r in rows.values())
    ids = [r["id"] for v in rows.values() for r in v]
    assert sorted(ids, key=int) == [str(i) for i in range(101)]
    cfg.data, cfg.valid_size, cfg.test_size, cfg.seed = str(src), 0.1, 0.2, 5
    s = load_splits(cfg)
    assert {k: [r["review"] for r in v] for k, v in rows.items()} == {k: v.texts for k, v in s.items()}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["test.csv", "train.csv", "valid.csv"]
