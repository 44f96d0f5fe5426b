"""Pruning reaches its sparsity and stays there through fine-tuning; distillation yields a smaller student."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from review_classifier.training.compress.measure import COMPRESSION_FILE
from review_classifier.training.compress.prune import encoder_linears, encoder_sparsity, prune_encoder, prune_model
from review_classifier.training.fit.model import load_model
from tests.training.compress.builders import compress_cfg, toy_tokenized


def test_prune_encoder_hits_the_target_sparsity_on_encoder_linears_only(tiny_model_dir):
    cfg = compress_cfg(tiny_model_dir, Path("unused"))
    model = load_model(cfg, str(tiny_model_dir))
    classifier_before = model.classifier.weight.detach().clone()
    prune_encoder(model, 0.6)
    assert encoder_sparsity(model) == pytest.approx(0.6, abs=1e-3)
    assert torch.equal(model.classifier.weight, classifier_before)      # head untouched
    assert not any(hasattr(m, "weight_orig") for m in encoder_linears(model))  # plain weights again


def test_prune_model_keeps_sparsity_through_fine_tuning_and_reports(tiny_model_dir, tmp_path):
    cfg = compress_cfg(tiny_model_dir, tmp_path / "pruned", "prune_sparsity=0.5", "prune_epochs=1")
    tokenized = toy_tokenized(tiny_model_dir, cfg)
    report = prune_model(cfg, tiny_model_dir, tokenized, tmp_path / "pruned")
    assert report["encoder_sparsity"] == pytest.approx(0.5, abs=1e-3)
    best = Path(report["model_dir"])
    reloaded = load_model(cfg, str(best))
    assert encoder_sparsity(reloaded) == pytest.approx(0.5, abs=1e-3)     # zeros survived the fine-tune
    for side in ("baseline", "compressed"):
        assert {"accuracy", "macro_f1", "file_bytes", "gzip_bytes", "reviews_per_s"} <= set(report[side])
    assert report["compressed"]["nonzero_parameters"] < report["baseline"]["nonzero_parameters"]
    assert report["compressed"]["gzip_bytes"] < report["baseline"]["gzip_bytes"]
    assert json.loads((best / COMPRESSION_FILE).read_text())["method"] == "pruning"
