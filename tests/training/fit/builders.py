"""The hand-written loop: loss weighting, batching, freezing, learning, checkpoint and resume."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from review_classifier.training.config.settings import load_config
from review_classifier.training.data.text import encode_texts
from review_classifier.training.fit.model import load_tokenizer
from tests.conftest import toy_review


def toy_tokenized(model_dir: Path, n_train: int = 320, n_valid: int = 80, seed: int = 0, max_length: int = 64):
    from datasets import Dataset, DatasetDict

    cfg = load_config("tiny", [f"model={model_dir}", f"max_length={max_length}"])
    tok = load_tokenizer(cfg)
    rng = random.Random(seed)

    def split(n):
        labels = [i % 2 for i in range(n)]
        texts = [toy_review(y, rng) for y in labels]
        ids = encode_texts(texts, tok, cfg.text_policy)
        return Dataset.from_dict({"input_ids": ids, "labels": labels, "length": [len(x) for x in ids]})

    return DatasetDict(train=split(n_train), valid=split(n_valid), test=split(n_valid)), tok


def tiny_cfg(model_dir: Path, out: Path, *extra: str):
    return load_config("tiny", [f"model={model_dir}", f"output_dir={out}", "max_length=64", "epochs=4",
                                "batch_size=16", "lr=3e-3", "tensorboard=false", "precision=fp32",
                                "patience=0", "warmup_ratio=0", *extra])


ROOT = Path(__file__).resolve().parents[3]


def run_cli(*args: str, env_extra: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "review_classifier.training.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)
