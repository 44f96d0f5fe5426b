"""From token ids to a model's feeds, and from its logits to probabilities: the one rule the
training job (export checks, calibration batches, teacher logits) and the edge runtime share, so
a bundle is scored exactly as it was verified. Pure numpy.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def pad_ids(ids: Sequence[Sequence[int]], input_names: Sequence[str], pad_id: int) -> dict[str, np.ndarray]:
    """Token id rows -> int64 feeds for exactly `input_names`, right-padded with `pad_id` to the
    longest row; attention_mask marks the real tokens, token_type_ids are all 0 (one segment)."""
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        input_ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
    return {n: feeds[n] for n in input_names}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities in float64, shifted by the row maximum so no exp overflows."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities, in the input's float dtype, shifted by the row maximum."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
