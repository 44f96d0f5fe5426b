"""Inputs the benchmark tests share: a tiny random bundle and a gzipped IMDB-shaped CSV."""
from __future__ import annotations

import csv
import gzip
from pathlib import Path


def tiny_bundle(folder: Path) -> Path:
    from tests.edge.conftest import export_bundle

    export_bundle(folder, ["negative", "positive"], ["input_ids", "attention_mask"])
    return folder


def tiny_bundle_and_peer_model(folder: Path, texts: list[str]) -> tuple[Path, Path]:
    """The tiny bundle (folder/bundle) and, for the PyTorch peers, an HF model folder (folder/torch)
    with the same tokenizer and labels: a random 2-layer BERT drawn with wide weights
    (initializer_range 0.3), its bias set so `texts` fall on both sides, so labels differ by text
    by clear margins (the bundle's own random model gives every text almost the same logits)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from tests.edge.conftest import TINY_POLICY, export_bundle

    bundle, torch_dir = folder / "bundle", folder / "torch"
    labels = ["negative", "positive"]
    _, tokenizer = export_bundle(bundle, labels, ["input_ids", "attention_mask"])
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, initializer_range=0.3,
                        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    model = BertForSequenceClassification(config).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=TINY_POLICY["max_length"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        model.classifier.bias[1] -= (logits[:, 1] - logits[:, 0]).median()
    model.save_pretrained(torch_dir)
    tokenizer.save_pretrained(torch_dir)
    return bundle, torch_dir


def write_reviews_gz(path: Path, texts: list[str], label: str = "positive", labels: list[str] | None = None) -> Path:
    """review,sentiment rows (`label` for all, or one of `labels` each), gzipped, as
    ../shared/data/imdb/test.csv.gz is laid out."""
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        w.writerows(zip(texts, labels or [label] * len(texts)))
    return path
