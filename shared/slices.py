"""Accuracy by slice: by text length in the model's tokens, by whether the text was cut, and by
the values of any column, each slice with its count, accuracy, macro F1 (over the labels the
slice holds) and a 95% interval.

One number for a whole test set hides where a model fails; a slice of 40 texts at 85% says
little either way. Every slice carries the Wilson score interval of its accuracy, and slices
under SMALL_SLICE texts are flagged `small`, so noise is not read as a finding. Pure numpy: the
training job's test report and `edge-classify --eval` both call `slice_report`.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from review_classifier.shared.metrics import classification_report

SMALL_SLICE = 100      # slices with fewer texts are flagged: their 95% interval is wider than about +-10 points
Z95 = 1.959964         # the normal quantile of a two-sided 95% interval
MAX_COLUMN_VALUES = 30  # a column with more values than this keeps its largest ones, the rest as "(other)"


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion correct/n (sound at 0, 1 and small n, unlike +-1.96 SE)."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def length_edges(max_length: int) -> list[int]:
    """Bucket upper bounds in tokens: a quarter, half, one, two and four times max_length."""
    return [max(1, max_length // 4), max(2, max_length // 2), max_length, 2 * max_length, 4 * max_length]


def length_bucket(tokens: int, edges: Sequence[int]) -> str:
    low = 0
    for high in edges:
        if tokens <= high:
            return f"{low + 1}-{high}"
        low = high
    return f">{edges[-1]}"


def bucket_names(edges: Sequence[int]) -> list[str]:
    lows = [0, *edges[:-1]]
    return [f"{lo + 1}-{hi}" for lo, hi in zip(lows, edges)] + [f">{edges[-1]}"]


def slice_rows(y_true: Sequence[int], y_pred: Sequence[int], values: Sequence, labels: Sequence[str],
               order: Sequence[str] | None = None) -> list[dict]:
    """One row per slice value: n, accuracy, macro F1 (over all labels), 95% interval, `small`.
    `order` fixes the order (and leaves out values not in it); else by count, largest first."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    keys = [str(v) for v in values]
    counts = Counter(keys)
    names = [v for v in order if v in counts] if order is not None else \
        sorted(counts, key=lambda v: (-counts[v], v))
    rows = []
    for name in names:
        idx = np.fromiter((i for i, k in enumerate(keys) if k == name), dtype=np.int64)
        rows.append(slice_row(name, y_true[idx], y_pred[idx], labels))
    return rows


def slice_row(name: str, y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    """One slice's figures. Its macro F1 averages the labels that occur in the slice (as truth or
    prediction), as scikit-learn does by default: a slice of one star rating holds one class, and
    the absent classes' F1 of 0 would halve a perfect slice's score."""
    report = classification_report(y_true.tolist(), y_pred.tolist(), labels)
    n, right = int(len(y_true)), int((y_true == y_pred).sum())
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    f1 = [report["per_class"][labels[i]]["f1"] for i in present]
    lo, hi = wilson_interval(right, n)
    return {"slice": name, "n": n, "correct": right, "accuracy": report["accuracy"],
            "macro_f1": float(np.mean(f1)) if f1 else 0.0, "ci95": [lo, hi], "small": n < SMALL_SLICE}


def _top_values(values: Sequence, limit: int = MAX_COLUMN_VALUES) -> list[str]:
    """The column's values as text, all but the `limit` most common ones as "(other)"."""
    keys = ["(empty)" if v is None or str(v).strip() == "" else str(v) for v in values]
    keep = {v for v, _ in Counter(keys).most_common(limit)}
    return [k if k in keep else "(other)" for k in keys]


def slice_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str], *,
                 tokens: Sequence[int] | None = None, truncated: Sequence[bool] | None = None,
                 max_length: int | None = None, columns: Mapping[str, Sequence] | None = None) -> dict:
    """Slices of one evaluation. `tokens`: each text's length in the model's tokens, special
    tokens included, before any cut; `truncated`: whether the model read less than the whole
    text; `columns`: {column name: each text's value} (a product line, a star rating, ...)."""
    y_true, y_pred = list(y_true), list(y_pred)
    report: dict = {"n": len(y_true), "small_slice": SMALL_SLICE, "interval": "Wilson score, 95%"}
    if tokens is not None:
        edges = length_edges(max_length or max(tokens, default=1))
        report["length_unit"] = "model tokens, special tokens included, before truncation"
        report["length_edges"] = edges
        report["by_length"] = slice_rows(y_true, y_pred, [length_bucket(int(t), edges) for t in tokens], labels,
                                         order=bucket_names(edges))
    if truncated is not None:
        report["by_truncation"] = slice_rows(y_true, y_pred, ["truncated" if t else "read whole" for t in truncated],
                                             labels, order=["read whole", "truncated"])
    for name, values in (columns or {}).items():
        report.setdefault("by_column", {})[name] = slice_rows(y_true, y_pred, _top_values(values), labels)
    return report


def format_slices(report: dict) -> str:
    """The slice tables as aligned text; small slices marked with '*'."""
    lines: list[str] = []
    groups = [("length (tokens)", report.get("by_length")), ("truncation", report.get("by_truncation"))]
    groups += [(f"column {name!r}", rows) for name, rows in (report.get("by_column") or {}).items()]
    for title, rows in groups:
        if not rows:
            continue
        width = max(len(title), *(len(r["slice"]) for r in rows))
        lines.append(f"{title:<{width}} {'n':>7} {'accuracy':>9} {'95% interval':>15} {'macro F1':>9}")
        for r in rows:
            lo, hi = r["ci95"]
            lines.append(f"{r['slice']:<{width}} {r['n']:>7,} {r['accuracy']:>9.4f} {f'{lo:.3f}-{hi:.3f}':>15} "
                         f"{r['macro_f1']:>9.4f}{' *' if r['small'] else ''}")
        lines.append("")
    if any(r["small"] for _, rows in groups for r in rows or ()):
        lines.append(f"* fewer than {report['small_slice']} texts: read the interval, not the accuracy")
    return "\n".join(lines).rstrip()
