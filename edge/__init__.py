"""The edge runtime: score texts offline with a model bundle (onnxruntime + tokenizers, no torch).

    from review_classifier import edge
    clf = edge.load()                      # the shipped default, or load("path/to/bundle")
    clf.predict(["What a wonderful film"]) # [Prediction(label="positive", probability=0.95..., ...)]
    clf.predict("What a wonderful film")   # a bare str is one text; "" gets NO_PREDICTION (label None)

Imports stay lazy so that `edge-classify`'s cold start pays only for what it uses.
"""
from __future__ import annotations

__all__ = ["load", "EdgeClassifier", "Prediction", "NO_PREDICTION"]


def load(bundle=None, threads: int | None = None, batch_size: int = 32):
    """An EdgeClassifier for `bundle` (folder or .tar.gz), or for the default one (edge.locate)."""
    from review_classifier.edge.locate import locate_bundle
    from review_classifier.edge.model import EdgeClassifier

    return EdgeClassifier(locate_bundle(bundle)[0], threads=threads, batch_size=batch_size)


def __getattr__(name: str):
    if name in ("EdgeClassifier", "Prediction", "NO_PREDICTION"):
        from review_classifier.edge import model

        return getattr(model, name)
    raise AttributeError(f"module 'edge' has no attribute {name!r}")
