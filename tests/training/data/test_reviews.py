"""data.reviews: the data fingerprint sees labels, order and split names, not the source's name."""
from __future__ import annotations

from review_classifier.training.data.reviews import Reviews, data_fingerprint


def test_fingerprint_sees_labels_and_order():
    a = {"train": Reviews(["x", "y"], [0, 1], "mem")}
    assert data_fingerprint(a) == data_fingerprint({"train": Reviews(["x", "y"], [0, 1], "other")})
    assert data_fingerprint(a) != data_fingerprint({"train": Reviews(["x", "y"], [1, 1], "mem")})
    assert data_fingerprint(a) != data_fingerprint({"train": Reviews(["y", "x"], [1, 0], "mem")})
    assert data_fingerprint(a) != data_fingerprint({"valid": Reviews(["x", "y"], [0, 1], "mem")})
