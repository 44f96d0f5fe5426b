"""The labelled texts every data step passes along, and their fingerprint.

Reading them is training.data.sources, splitting training.data.splits, tokenising
training.data.tokenized and describing them training.data.report.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class Reviews:
    """One split: texts and their class ids, plus where they came from (for messages)."""

    texts: list[str]
    labels: list[int]
    source: str
    names: tuple[str, ...] = ()  # class names by id, for messages and reports

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int]) -> "Reviews":
        idx = [int(i) for i in idx]
        return Reviews([self.texts[i] for i in idx], [self.labels[i] for i in idx], self.source, self.names)

    def class_counts(self, num_labels: int | None = None) -> np.ndarray:
        n = max(num_labels or 0, len(self.names), (max(self.labels) + 1) if self.labels else 0)
        return np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=n)

    def class_name(self, label: int) -> str:
        return self.names[label] if label < len(self.names) else str(label)


def data_fingerprint(splits: dict[str, Reviews]) -> str:
    """sha256 (16 hex digits) over the texts and labels of every split, in order."""
    h = hashlib.sha256()
    for name in sorted(splits):
        r = splits[name]
        h.update(f"{name}\0{len(r)}\0".encode())
        for text, label in zip(r.texts, r.labels):
            h.update(text.encode("utf-8", "surrogatepass"))
            h.update(b"\0%d\n" % label)
    return h.hexdigest()[:16]
