"""Classification metrics in plain Python + numpy, shared by the training job and `edge-classify --eval`.

Conventions (same as scikit-learn's defaults): the confusion matrix has one row per true class
and one column per predicted class; precision/recall/F1 of a class with nothing to divide by
are 0; macro F1 is the unweighted mean over all classes in `labels`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence, y_pred: Sequence, labels: Sequence[str]) -> np.ndarray:
    """Counts[i, j] = how many examples of true class i were predicted as class j.

    `y_true` and `y_pred` hold class ids (ints) or label names from `labels`.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    k = len(labels)
    t, p = _to_ids(y_true, labels), _to_ids(y_pred, labels)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def report_from_confusion(matrix, labels: Sequence[str]) -> dict:
    """Accuracy, macro F1 and per-class precision/recall/F1/support from a confusion matrix."""
    m = np.asarray(matrix, dtype=np.int64)
    k = len(labels)
    if m.shape != (k, k):
        raise ValueError(f"confusion matrix has shape {m.shape}, expected {(k, k)} for {list(labels)}")
    tp = np.diag(m).astype(np.float64)
    support = m.sum(axis=1)
    predicted = m.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    total = int(m.sum())
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]),
               "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(labels)
    }
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1.mean()) if k else 0.0,
        "n": total,
        "labels": list(labels),
        "per_class": per_class,
        "confusion_matrix": m.tolist(),
    }


def classification_report(y_true: Sequence, y_pred: Sequence, labels: Sequence[str]) -> dict:
    """Accuracy, macro F1, per-class precision/recall/F1/support, confusion matrix (rows = true)."""
    return report_from_confusion(confusion_matrix(y_true, y_pred, labels), labels)


def accuracy_macro_f1(y_true: Sequence[int], y_pred: Sequence[int], num_labels: int) -> dict[str, float]:
    """{"accuracy", "macro_f1"} over class ids 0..num_labels-1 (the training loop's per-epoch figures)."""
    report = report_from_confusion(confusion_matrix(y_true, y_pred, [str(i) for i in range(num_labels)]),
                                   [str(i) for i in range(num_labels)])
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}


def format_confusion(matrix, labels: Sequence[str]) -> str:
    """The confusion matrix as an aligned text table: rows = true class, columns = predicted."""
    m = np.asarray(matrix, dtype=np.int64)
    names = [str(x) for x in labels]
    corner = "true \\ pred"
    first = max([len(corner)] + [len(n) for n in names])
    widths = [max(len(n), *(len(str(v)) for v in m[:, j])) if m.size else len(n)
              for j, n in enumerate(names)]
    lines = ["  ".join([corner.ljust(first)] + [n.rjust(w) for n, w in zip(names, widths)])]
    for i, name in enumerate(names):
        cells = [str(int(v)).rjust(w) for v, w in zip(m[i], widths)]
        lines.append("  ".join([name.ljust(first)] + cells))
    return "\n".join(lines)


def format_report(report: dict) -> str:
    """A short human-readable summary of `classification_report`'s dict."""
    lines = [f"examples  {report['n']}",
             f"accuracy  {report['accuracy']:.4f}",
             f"macro F1  {report['macro_f1']:.4f}",
             "",
             f"{'class':<12} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}"]
    for name, c in report["per_class"].items():
        lines.append(f"{name:<12} {c['precision']:>9.4f} {c['recall']:>9.4f} {c['f1']:>9.4f} {c['support']:>9d}")
    lines += ["", format_confusion(report["confusion_matrix"], report["labels"])]
    return "\n".join(lines)


def _to_ids(values: Sequence, labels: Sequence[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(labels)}
    out = np.empty(len(values), dtype=np.int64)
    for n, v in enumerate(values):
        if isinstance(v, str):
            if v not in index:
                raise ValueError(f"unknown label {v!r}; expected one of {list(labels)}")
            out[n] = index[v]
        else:
            out[n] = int(v)
            if not 0 <= out[n] < len(labels):
                raise ValueError(f"class id {v} out of range for {len(labels)} labels")
    return out


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out
