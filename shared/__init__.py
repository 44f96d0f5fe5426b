"""Pure-Python pieces that the training job and the edge runtime must agree on.

Nothing here imports torch, transformers or onnxruntime.
"""
from shared.errors import ClassifierError

__all__ = ["ClassifierError"]
