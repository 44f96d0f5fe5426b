"""The hand-written loop: loss weighting, batching, freezing, learning, checkpoint and resume."""
from __future__ import annotations

from review_classifier.training.config.settings import load_config
from review_classifier.training.fit.model import encoder_layers, load_model, set_lower_frozen


def test_freezing_lower_layers_and_embeddings(tiny_model_dir):
    cfg = load_config("tiny", [f"model={tiny_model_dir}"])
    model = load_model(cfg)
    layers = encoder_layers(model)
    set_lower_frozen(model, 1, frozen=True)
    assert not any(p.requires_grad for p in model.base_model.embeddings.parameters())
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    set_lower_frozen(model, 1, frozen=False)
    assert all(p.requires_grad for p in model.parameters())
