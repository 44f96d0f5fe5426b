"""Training-side text encoding: the transformers tokenizer + the shared truncation policy.

Every path that turns reviews into model inputs in training (datasets, export parity,
evaluation) goes through `encode_texts`, so it matches the edge runtime token for token.
"""
from __future__ import annotations

from typing import Sequence

from review_classifier.shared.text import TextPolicy, build_input_ids, build_windows, normalize_text


def special_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a single text ([CLS], [SEP])."""
    probe = "hello"
    core = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(core) + 1):
        if full[i:i + len(core)] == core:
            return list(full[:i]), list(full[i + len(core):])
    raise ValueError(f"cannot locate the text inside {full}; unsupported tokenizer")


def _tokenised(texts: Sequence[str], tokenizer, policy: TextPolicy):
    """(prefix, suffix, ids): the special tokens, and each normalised text's ids without them."""
    prefix, suffix = special_ids(tokenizer)
    normed = [normalize_text(t, policy) for t in texts]
    return prefix, suffix, tokenizer(normed, add_special_tokens=False, verbose=False)["input_ids"]


def encode_texts(texts: Sequence[str], tokenizer, policy: TextPolicy) -> list[list[int]]:
    """Normalise, tokenise without special tokens, truncate by policy, add special tokens."""
    prefix, suffix, raw = _tokenised(texts, tokenizer, policy)
    return [build_input_ids(ids, prefix, suffix, policy) for ids in raw]


def encode_windows(texts: Sequence[str], tokenizer, policy: TextPolicy) -> list[list[list[int]]]:
    """Per text its model inputs when scored: one, or the windows of a long text (policy.windows)."""
    prefix, suffix, raw = _tokenised(texts, tokenizer, policy)
    return [build_windows(ids, prefix, suffix, policy) for ids in raw]
