"""Fixtures of the tests of training/data/: a config with its own cache, the MiniLM tokenizer."""
from __future__ import annotations

import pytest

from tests.conftest import minilm_dir
from review_classifier.training.config.settings import TrainConfig


@pytest.fixture()
def cfg(tmp_path) -> TrainConfig:
    return TrainConfig(cache_dir=str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir())
