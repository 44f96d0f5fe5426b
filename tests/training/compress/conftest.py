"""Pruning reaches its sparsity and stays there through fine-tuning; distillation yields a smaller student."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import build_tiny_model


@pytest.fixture(scope="session")
def four_layer_teacher(tmp_path_factory) -> Path:
    """A 4-layer tiny BERT (random weights) so a 2-layer student is strictly smaller."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    folder = build_tiny_model(tmp_path_factory.mktemp("teacher") / "model")
    config = AutoConfig.from_pretrained(folder)
    config.num_hidden_layers = 4
    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    return folder
