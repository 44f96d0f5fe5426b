"""Output formats: one line per input record, in input order.

tsv (default, no header): `label<TAB>probability`; with top-k, k such pairs on the line.
csv (header): label,probability[,label_2,probability_2,...].
jsonl: {"label": ..., "probability": ...}; with top-k also "top_k": [{"label", "probability"}, ...].
An empty input text gives an empty label and an empty probability (null in JSONL).
"""
from __future__ import annotations

import csv
import io
import json

import numpy as np

OUTPUT_FORMATS = ("tsv", "csv", "jsonl")


class Formatter:
    """Turn one probability row (or None for an empty text) into one output line."""

    def __init__(self, fmt: str, labels: list[str], top_k: int = 1):
        self.fmt, self.labels, self.top_k = fmt, labels, top_k

    def header(self) -> str | None:
        if self.fmt != "csv":
            return None
        cols = ["label", "probability"]
        for i in range(2, self.top_k + 1):
            cols += [f"label_{i}", f"probability_{i}"]
        return self._csv_line(cols)

    def line(self, probs: np.ndarray | None) -> str:
        if probs is None:
            top = [("", None)] * self.top_k
        elif self.top_k == 1:
            i = int(probs.argmax())
            top = [(self.labels[i], float(probs[i]))]
        else:
            order = np.argsort(-probs, kind="stable")[:self.top_k]
            top = [(self.labels[i], float(probs[i])) for i in order]
        if self.fmt == "jsonl":
            obj = {"label": top[0][0], "probability": _round(top[0][1])}
            if self.top_k > 1:
                obj["top_k"] = [{"label": lab, "probability": _round(p)} for lab, p in top]
            return json.dumps(obj, ensure_ascii=False) + "\n"
        cells = [c for lab, p in top for c in (lab, "" if p is None else f"{p:.6f}")]
        if self.fmt == "csv":
            return self._csv_line(cells)
        return "\t".join(cells) + "\n"

    @staticmethod
    def _csv_line(cells: list[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        return buf.getvalue()


def _round(p: float | None) -> float | None:
    return None if p is None else round(p, 6)
