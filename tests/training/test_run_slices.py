"""The training job's test report: accuracy by token length and by truncation (shared.slices)."""
from __future__ import annotations

import numpy as np

from review_classifier.training.config.settings import load_config


def test_the_test_report_has_slices_by_length_and_truncation():
    from review_classifier.training.fit.run import split_slices

    cfg = load_config("tiny")   # max_length 64
    full = [10, 20, 70, 200, 30]
    slices = split_slices(full, np.array([0, 1, 0, 1, 1]), np.array([0, 1, 1, 1, 0]), cfg)
    assert [(r["slice"], r["n"]) for r in slices["by_length"]] == [("1-16", 1), ("17-32", 2), ("65-128", 1),
                                                                   ("129-256", 1)]
    assert [(r["slice"], r["n"], r["correct"]) for r in slices["by_truncation"]] == [("read whole", 3, 2),
                                                                                     ("truncated", 2, 1)]
