"""data.tokenized: the tokenised splits, their columns and their cache (and a damaged cache rebuilt)."""
from __future__ import annotations

from pathlib import Path

from review_classifier.training.data import tokenized as tokenized_mod
from review_classifier.training.data.reviews import Reviews
from review_classifier.training.data.tokenized import tokenize_splits
from review_classifier.training.data.text import encode_texts


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
