"""The training loop's metrics (Hugging Face `evaluate`) and the product's (shared.metrics, which
the edge runtime and the test report use) give the same figures."""
import numpy as np

from review_classifier.shared.metrics import classification_report
from review_classifier.training.metrics import accuracy_f1


def test_evaluate_and_shared_metrics_agree_including_absent_classes():
    rng = np.random.default_rng(3)
    for k, n in ((2, 500), (3, 400), (5, 60)):
        truth = rng.integers(0, k, n)
        guess = np.where(rng.random(n) < 0.7, truth, rng.integers(0, k, n))
        guess[guess == k - 1] = 0                         # one class never predicted: its F1 is 0
        ours = classification_report(truth.tolist(), guess.tolist(), [f"c{i}" for i in range(k)])
        theirs = accuracy_f1(guess, truth, k)
        assert abs(ours["accuracy"] - theirs["accuracy"]) < 1e-12
        assert abs(ours["macro_f1"] - theirs["macro_f1"]) < 1e-12
