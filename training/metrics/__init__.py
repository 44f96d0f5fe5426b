"""Accuracy and macro F1 through Hugging Face `evaluate`, from metric modules shipped here.

`evaluate.load("accuracy")` goes to the hub; loading the module folders below works offline.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).parent


@lru_cache(maxsize=1)
def _metrics():
    import evaluate

    return evaluate.combine([str(HERE / "accuracy"), str(HERE / "f1")])


def accuracy_f1(predictions: Sequence[int], references: Sequence[int], num_labels: int) -> dict[str, float]:
    """{"accuracy", "macro_f1"} computed by `evaluate` over all classes."""
    out = _metrics().compute(predictions=list(map(int, predictions)),
                             references=list(map(int, references)),
                             average="macro", labels=list(range(num_labels)))
    return {"accuracy": out["accuracy"], "macro_f1": out["f1"]}
