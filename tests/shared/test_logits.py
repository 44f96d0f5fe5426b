"""shared.logits: the feeds both halves build from token ids, and softmax / log_softmax."""
from __future__ import annotations

import numpy as np
import pytest

from review_classifier.shared.logits import log_softmax, pad_ids, softmax


def test_rows_are_right_padded_with_the_pad_id_and_masked():
    feeds = pad_ids([[101, 7, 102], [101, 102]], ["input_ids", "attention_mask", "token_type_ids"], pad_id=5)
    assert feeds["input_ids"].tolist() == [[101, 7, 102], [101, 102, 5]]
    assert feeds["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert feeds["token_type_ids"].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert all(v.dtype == np.int64 for v in feeds.values())


def test_only_the_model_s_inputs_are_fed_in_its_order():
    feeds = pad_ids([[1, 2]], ["attention_mask", "input_ids"], pad_id=0)
    assert list(feeds) == ["attention_mask", "input_ids"]


def test_softmax_is_shift_invariant_and_never_overflows():
    z = np.array([[1000.0, 1001.0, 999.0], [-3.0, 0.0, 3.0]])
    p = softmax(z)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    np.testing.assert_allclose(p[0], softmax(z[0] - 1000.0), rtol=1e-12)
    e = np.exp([-3.0, 0.0, 3.0])
    np.testing.assert_allclose(p[1], e / e.sum(), rtol=1e-12)
    assert softmax(z.astype(np.float32)).dtype == np.float32


def test_log_softmax_is_the_log_of_softmax_in_float64():
    z = np.array([[2.0, -1.0], [0.5, 0.5]], dtype=np.float32)
    out = log_softmax(z)
    assert out.dtype == np.float64
    np.testing.assert_allclose(np.exp(out), softmax(z.astype(np.float64)), rtol=1e-12)
    assert log_softmax(np.array([[1e4, 0.0]]))[0, 1] == pytest.approx(-1e4)
