import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix as sk_confusion, f1_score, precision_recall_fscore_support

from review_classifier.shared.metrics import classification_report, format_confusion, format_report, report_from_confusion

LABELS = ["negative", "positive", "neutral"]


def test_matches_sklearn_on_random_predictions():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 500).tolist()
    y_pred = rng.integers(0, 3, 500).tolist()
    r = classification_report(y_true, y_pred, LABELS)
    assert r["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert r["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert r["confusion_matrix"] == sk_confusion(y_true, y_pred, labels=[0, 1, 2]).tolist()
    p, rc, f, s = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1, 2], zero_division=0)
    for i, name in enumerate(LABELS):
        c = r["per_class"][name]
        assert (c["precision"], c["recall"], c["f1"], c["support"]) == pytest.approx((p[i], rc[i], f[i], s[i]))


def test_label_names_and_a_class_never_seen():
    y_true = ["negative", "positive", "positive", "negative"]
    y_pred = ["negative", "positive", "negative", "negative"]
    r = classification_report(y_true, y_pred, LABELS)
    assert r["accuracy"] == 0.75
    assert r["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert r["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # sklearn's macro F1 over all three labels counts the unseen class as 0
    assert r["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=LABELS, average="macro", zero_division=0))


def test_perfect_and_empty():
    assert classification_report([0, 1, 1], [0, 1, 1], ["a", "b"])["macro_f1"] == 1.0
    r = report_from_confusion([[0, 0], [0, 0]], ["a", "b"])
    assert r["accuracy"] == 0.0 and r["n"] == 0


def test_rejects_unknown_labels_and_length_mismatch():
    with pytest.raises(ValueError, match="unknown label"):
        classification_report(["x"], ["a"], ["a", "b"])
    with pytest.raises(ValueError, match="out of range"):
        classification_report([5], [0], ["a", "b"])
    with pytest.raises(ValueError, match="items"):
        classification_report([0, 1], [0], ["a", "b"])


def test_format_confusion_is_aligned_rows_true():
    text = format_confusion([[12, 3], [1, 140]], ["negative", "positive"])
    lines = text.splitlines()
    assert lines[0].split() == ["true", "\\", "pred", "negative", "positive"]
    assert lines[1].split() == ["negative", "12", "3"]
    assert lines[2].split() == ["positive", "1", "140"]
    assert len({len(line) for line in lines}) == 1
    summary = format_report(classification_report([0, 1], [0, 0], ["negative", "positive"]))
    assert "accuracy  0.5000" in summary and "macro F1" in summary
