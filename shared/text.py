"""Text preparation shared by training and edge: normalisation, then token truncation.

A review must become the same token ids in the training job (transformers tokenizer) and on
the edge (`tokenizers` on the bundle's tokenizer.json). Both tokenise the normalised text
without special tokens, then call `fit_ids` here, so the truncation policy lives in one place.
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

from review_classifier.shared.errors import ClassifierError

Truncation = Literal["head", "tail", "head+tail"]
TRUNCATIONS: tuple[str, ...] = ("head", "tail", "head+tail")

_BR = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
_WS = re.compile(r"\s+")
# No tokenizer we ship turns fewer than this many characters into one token, so cutting a
# text to max_length * CHARS_PER_TOKEN characters at each end never changes the kept tokens
# in practice, and keeps a 10 MB line from costing 10 MB of tokenisation.
CHARS_PER_TOKEN = 32


@dataclass(frozen=True)
class TextPolicy:
    """How a raw text becomes model input: normalisation switches and truncation."""

    max_length: int = 256
    truncation: Truncation = "head+tail"
    head_fraction: float = 0.25  # share of the token budget kept from the start (head+tail)
    strip_html: bool = True
    unicode_form: str = "NFC"
    collapse_whitespace: bool = True
    # A text longer than one input: windows > 1 reads it as up to that many inputs of max_length
    # (each sharing window_overlap tokens, at most max_length / 2, with the next; evenly spread
    # over the text when it needs more), and the model's logits are averaged over them.
    # 1: one input, cut by truncation.
    windows: int = 1
    window_overlap: int = 32

    def __post_init__(self) -> None:
        if self.truncation not in TRUNCATIONS:
            raise ClassifierError(f"truncation must be one of {TRUNCATIONS}, got {self.truncation!r}")
        if self.max_length < 3:
            raise ClassifierError(f"max_length must be at least 3, got {self.max_length}")
        if not 0.0 <= self.head_fraction <= 1.0:
            raise ClassifierError(f"head_fraction must be in [0, 1], got {self.head_fraction}")
        if self.windows < 1:
            raise ClassifierError(f"windows must be at least 1, got {self.windows}")
        if self.window_overlap < 0:
            raise ClassifierError(f"window_overlap must be at least 0, got {self.window_overlap}")
        if self.unicode_form not in ("NFC", "NFKC", "NFD", "NFKD", "none"):
            raise ClassifierError(f"unicode_form must be NFC, NFKC, NFD, NFKD or none, got {self.unicode_form!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TextPolicy":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def normalize_text(text: str, policy: TextPolicy) -> str:
    """IMDB `<br />` tags to spaces, Unicode normal form, NULs dropped, whitespace collapsed."""
    text = clip_chars(text, policy)
    if policy.unicode_form != "none":
        text = unicodedata.normalize(policy.unicode_form, text)
    text = text.replace("\x00", " ")
    if policy.strip_html:
        text = _BR.sub(" ", text)
    if policy.collapse_whitespace:
        text = _WS.sub(" ", text).strip()
    return text


def clip_chars(text: str, policy: TextPolicy) -> str:
    """Bound the work on huge texts: keep only the characters truncation could ever reach."""
    limit = policy.max_length * policy.windows * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text
    if policy.windows > 1:   # windows reach the first and the last tokens
        return text[:limit] + " " + text[-limit:]
    if policy.truncation == "head":
        return text[:limit]
    if policy.truncation == "tail":
        return text[-limit:]
    return text[:limit] + " " + text[-limit:]


def fit_ids(ids: Sequence[int], budget: int, policy: TextPolicy) -> list[int]:
    """Cut token ids (no special tokens) to `budget` tokens by the truncation policy."""
    ids = list(ids)
    if len(ids) <= budget:
        return ids
    if policy.truncation == "head":
        return ids[:budget]
    if policy.truncation == "tail":
        return ids[len(ids) - budget:]
    head = int(round(budget * policy.head_fraction))
    tail = budget - head
    return ids[:head] + (ids[len(ids) - tail:] if tail else [])


def build_input_ids(ids: Sequence[int], prefix: Sequence[int], suffix: Sequence[int],
                    policy: TextPolicy) -> list[int]:
    """Truncate to max_length including the special tokens, then wrap in them."""
    budget = policy.max_length - len(prefix) - len(suffix)
    return list(prefix) + fit_ids(ids, budget, policy) + list(suffix)


def window_starts(n: int, budget: int, policy: TextPolicy) -> list[int]:
    """Where the windows over `n` tokens start: every budget - window_overlap tokens, the last
    one ending at the text's end; past policy.windows of them, that many spread evenly from
    the first token to the last (so the start and the end are always read)."""
    if n <= budget or policy.windows == 1:
        return [0]
    stride = _window_stride(budget, policy)
    needed = windows_needed(n, budget, policy)
    if needed <= policy.windows:
        return [min(i * stride, n - budget) for i in range(needed)]
    k = policy.windows
    return [round(i * (n - budget) / (k - 1)) for i in range(k)]


def _window_stride(budget: int, policy: TextPolicy) -> int:
    return max(1, budget - min(policy.window_overlap, policy.max_length // 2))


def windows_needed(n: int, budget: int, policy: TextPolicy) -> int:
    """Windows of `budget` tokens (overlapping as the policy says) it takes to read `n` tokens whole."""
    if n <= budget:
        return 1
    return math.ceil((n - budget) / _window_stride(budget, policy)) + 1


def is_cut(n: int, budget: int, policy: TextPolicy) -> bool:
    """Whether a text of `n` tokens (no special tokens) loses tokens to the policy: longer than
    one input with windows=1, or needing more windows than policy.windows (spread windows skip some)."""
    return n > budget and (policy.windows == 1 or windows_needed(n, budget, policy) > policy.windows)


def build_windows(ids: Sequence[int], prefix: Sequence[int], suffix: Sequence[int],
                  policy: TextPolicy) -> list[list[int]]:
    """The model inputs for one text: one (build_input_ids) unless policy.windows > 1 and the text
    is longer than max_length, then its windows, each wrapped in the special tokens."""
    budget = policy.max_length - len(prefix) - len(suffix)
    if policy.windows == 1 or len(ids) <= budget:
        return [build_input_ids(ids, prefix, suffix, policy)]
    ids = list(ids)
    return [list(prefix) + ids[s:s + budget] + list(suffix) for s in window_starts(len(ids), budget, policy)]


def pool_windows(logits, counts: Sequence[int]):
    """Rows of logits (numpy, one per window, texts in order) -> one row per text: the mean of
    its windows' rows, in float64 (a one-window text keeps its row's values exactly)."""
    import numpy as np

    logits = np.asarray(logits, dtype=np.float64)
    if len(counts) == len(logits):
        return logits
    ends = np.cumsum(counts)
    return np.stack([logits[end - c:end].mean(axis=0) for c, end in zip(counts, ends)])


def is_blank(text: str) -> bool:
    """An empty or whitespace-only text: it gets no prediction (an empty record, NO_PREDICTION)."""
    return not text.strip()
