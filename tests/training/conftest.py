"""Fixtures for the training tests: toy reviews and a briefly trained tiny classifier."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.conftest import build_tiny_model, toy_review
from review_classifier.training.config.settings import load_config
from review_classifier.training.data.reviews import Reviews

NAMES = ("negative", "positive")


def toy_reviews(n: int, seed: int, source: str) -> Reviews:
    rng = random.Random(seed)
    labels = [i % 2 for i in range(n)]
    return Reviews([toy_review(y, rng) for y in labels], labels, source, NAMES)


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory) -> Path:
    """The tiny BERT fine-tuned for a few seconds on toy reviews, so accuracy means something.

    A bare loop (not training.fit.loop.fit, which evaluates and checkpoints every epoch) keeps it quick.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from review_classifier.shared.logits import pad_ids
    from review_classifier.training.data.text import encode_texts

    root = tmp_path_factory.mktemp("trained")
    folder = build_tiny_model(root / "model")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    train = toy_reviews(384, 1, "train")
    ids = encode_texts(train.texts, tok, load_config("tiny", ["max_length=48"]).text_policy)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for _ in range(4):
        order = torch.randperm(len(ids)).tolist()
        for i in range(0, len(order), 32):
            idx = order[i:i + 32]
            feeds = {k: torch.from_numpy(v) for k, v in pad_ids([ids[j] for j in idx], names, 0).items()}
            loss = model(**feeds, labels=torch.tensor([train.labels[j] for j in idx])).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval()
    model.save_pretrained(folder)
    return folder


