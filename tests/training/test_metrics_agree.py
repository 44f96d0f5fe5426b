"""shared.metrics is the one metrics implementation (the training loop, the Trainer engine, the
test report and `edge-classify --eval` all use it); Hugging Face `evaluate` and scikit-learn
serve as oracles here."""
from pathlib import Path

import numpy as np
import pytest

from review_classifier.shared.metrics import accuracy_macro_f1, classification_report

ORACLES = Path(__file__).parent / "evaluate_metrics"   # evaluate's accuracy and f1 modules: load() offline


@pytest.fixture(scope="module")
def hf_metrics():
    evaluate = pytest.importorskip("evaluate")
    return evaluate.combine([str(ORACLES / "accuracy"), str(ORACLES / "f1")])


def test_shared_metrics_match_evaluate_and_scikit_learn_including_absent_classes(hf_metrics):
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(3)
    for k, n in ((2, 500), (3, 400), (5, 60)):
        truth = rng.integers(0, k, n)
        guess = np.where(rng.random(n) < 0.7, truth, rng.integers(0, k, n))
        guess[guess == k - 1] = 0                         # one class never predicted: its F1 is 0
        ours = accuracy_macro_f1(truth.tolist(), guess.tolist(), k)
        report = classification_report(truth.tolist(), guess.tolist(), [f"c{i}" for i in range(k)])
        hf = hf_metrics.compute(predictions=guess.tolist(), references=truth.tolist(), average="macro",
                                labels=list(range(k)))
        sk_f1 = f1_score(truth, guess, average="macro", labels=list(range(k)), zero_division=0)
        for value in (report["accuracy"], hf["accuracy"], accuracy_score(truth, guess)):
            assert ours["accuracy"] == pytest.approx(value, abs=1e-12)
        for value in (report["macro_f1"], hf["f1"], sk_f1):
            assert ours["macro_f1"] == pytest.approx(value, abs=1e-12)
        assert 0 < ours["macro_f1"] < ours["accuracy"] < 1
