"""Text preparation shared by training and edge: normalisation, then token truncation.

A review must become the same token ids in the training job (transformers tokenizer) and on
the edge (`tokenizers` on the bundle's tokenizer.json). Both tokenise the normalised text
without special tokens, then call `fit_ids` here, so the truncation policy lives in one place.
"""
from __future__ import annotations

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

    def __post_init__(self) -> None:
        if self.truncation not in TRUNCATIONS:
            raise ClassifierError(f"truncation must be one of {TRUNCATIONS}, got {self.truncation!r}")
        if self.max_length < 3:
            raise ClassifierError(f"max_length must be at least 3, got {self.max_length}")
        if not 0.0 <= self.head_fraction <= 1.0:
            raise ClassifierError(f"head_fraction must be in [0, 1], got {self.head_fraction}")
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
    limit = policy.max_length * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text
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
