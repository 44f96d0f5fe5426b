"""bench-audit's pieces: the seeded label flips, the detection scores, the figure."""
from __future__ import annotations

import numpy as np

from benchmarks.bench_audit import detection_scores, flip_labels


def test_flips_change_exactly_the_drawn_rows_to_another_label():
    labels = np.arange(1000) % 8
    noisy, flipped = flip_labels(labels, 8, 0.05, seed=3)
    assert len(flipped) == 50 and np.all(noisy[flipped] != labels[flipped])
    assert np.array_equal(np.flatnonzero(noisy != labels), flipped)
    again, same = flip_labels(labels, 8, 0.05, seed=3)
    assert np.array_equal(again, noisy) and np.array_equal(same, flipped)
    assert len(set((noisy[flipped] - labels[flipped]) % 8)) > 3      # spread over the other labels


def test_detection_scores():
    flipped = np.array([1, 2, 3, 4])
    s = detection_scores(flagged=np.array([2, 3, 9]), ranked=np.array([3, 9, 2, 1, 0]), flipped=flipped)
    assert (s["flagged"], s["true_positives"]) == (3, 2)
    assert s["precision"] == 2 / 3 and s["recall"] == 0.5
    assert s["precision_at_n_flipped"] == 3 / 4                        # top 4: 3, 9, 2, 1
