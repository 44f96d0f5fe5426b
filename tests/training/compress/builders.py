"""Pruning reaches its sparsity and stays there through fine-tuning; distillation yields a smaller student."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch

from review_classifier.training.config.settings import load_config
from review_classifier.training.data.text import encode_texts
from review_classifier.training.fit.model import load_tokenizer
from tests.conftest import toy_review


def toy_tokenized(model_dir: Path, cfg, n_train: int = 160, n_valid: int = 48, seed: int = 0):
    from datasets import Dataset, DatasetDict

    tok = load_tokenizer(cfg, str(model_dir))
    rng = random.Random(seed)

    def split(n):
        labels = [i % 2 for i in range(n)]
        ids = encode_texts([toy_review(y, rng) for y in labels], tok, cfg.text_policy)
        return Dataset.from_dict({"input_ids": ids, "labels": labels, "length": [len(x) for x in ids]})

    return DatasetDict(train=split(n_train), valid=split(n_valid))


def compress_cfg(model_dir: Path, out: Path, *extra: str):
    return load_config("tiny", [f"model={model_dir}", f"output_dir={out}", "max_length=48", "batch_size=16",
                                "lr=3e-3", "tensorboard=false", "precision=fp32", "patience=0",
                                "warmup_ratio=0", *extra])


TRAIN_CLASSIFY = Path(sys.executable).with_name("train-classify")


LABELS = ["negative", "positive"]


def tiny_cfg(*extra: str):
    return load_config("tiny", ["max_length=48", "tensorboard=false", "precision=fp32", *extra])


def torch_logits(folder: Path, texts: list[str], cfg) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from review_classifier.training.data.text import encode_texts

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return np.concatenate([model(input_ids=torch.tensor([ids])).logits.numpy()
                               for ids in encode_texts(texts, tok, cfg.text_policy)])
