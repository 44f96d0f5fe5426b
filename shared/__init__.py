"""Pure-Python pieces that the training job and the edge runtime must agree on.

Nothing here imports torch, transformers or onnxruntime.
"""
from review_classifier.shared.errors import ClassifierError

__all__ = ["ClassifierError"]
