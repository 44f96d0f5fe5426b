"""shared.text: normalisation and the truncation policy both halves use."""
from __future__ import annotations

import pytest

from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.text import CHARS_PER_TOKEN, TextPolicy, build_input_ids, clip_chars, fit_ids, normalize_text


def test_normalize_removes_br_tags_nuls_and_extra_whitespace():
    p = TextPolicy()
    raw = "Great film.<br /><br />Loved it!<BR>Really\x00 truly\r\n\tgood.  "
    assert normalize_text(raw, p) == "Great film. Loved it! Really truly good."


def test_normalize_unicode_form_is_configurable():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert normalize_text(decomposed, TextPolicy()) == composed                      # NFC by default
    assert normalize_text(decomposed, TextPolicy(unicode_form="none")) == decomposed
    assert normalize_text("\ufb01ne", TextPolicy(unicode_form="NFKC")) == "fine"     # ligature folded


def test_html_stripping_can_be_switched_off():
    assert normalize_text("a<br />b", TextPolicy(strip_html=False)) == "a<br />b"


@pytest.mark.parametrize("strategy,expected", [
    ("head", list(range(8))),
    ("tail", list(range(12, 20))),
    ("head+tail", [0, 1] + list(range(14, 20))),     # 25% of 8 from the head, the rest from the tail
])
def test_fit_ids_strategies(strategy, expected):
    assert fit_ids(range(20), 8, TextPolicy(truncation=strategy)) == expected


def test_fit_ids_keeps_short_inputs_whole():
    assert fit_ids([5, 6], 8, TextPolicy()) == [5, 6]


def test_build_input_ids_counts_special_tokens_in_max_length():
    p = TextPolicy(max_length=6, truncation="head")
    assert build_input_ids(list(range(10, 20)), [101], [102], p) == [101, 10, 11, 12, 13, 102]


def test_clip_chars_bounds_huge_texts_without_changing_reachable_tokens():
    p = TextPolicy(max_length=8, truncation="head+tail")
    words = [f"w{i}" for i in range(200_000)]
    text = " ".join(words)
    clipped = clip_chars(text, p)
    assert len(clipped) <= 2 * 8 * CHARS_PER_TOKEN + 1
    assert clipped.startswith("w0 w1 w2") and clipped.endswith("w199998 w199999")
    assert clip_chars("short", p) == "short"


@pytest.mark.parametrize("bad", [{"truncation": "middle"}, {"max_length": 2}, {"head_fraction": 1.5},
                                 {"unicode_form": "NFX"}])
def test_bad_policy_is_a_user_error(bad):
    with pytest.raises(ClassifierError):
        TextPolicy(**bad)


def test_policy_round_trips_through_a_dict():
    p = TextPolicy(max_length=128, truncation="tail", head_fraction=0.5)
    assert TextPolicy.from_dict({**p.to_dict(), "unknown_future_field": 1}) == p


def test_windows_cover_a_long_text_with_overlap_and_end_at_its_end():
    from review_classifier.shared.text import window_starts

    policy = TextPolicy(max_length=12, windows=8, window_overlap=2)
    starts = window_starts(35, 10, policy)             # 10 tokens a window, stride 8
    assert starts == [0, 8, 16, 24, 25]
    covered = set()
    for s in starts:
        covered |= set(range(s, s + 10))
    assert covered == set(range(35))
    assert window_starts(10, 10, policy) == [0]       # fits in one window


def test_more_windows_than_allowed_spread_evenly_from_the_first_token_to_the_last():
    from review_classifier.shared.text import window_starts

    starts = window_starts(1000, 10, TextPolicy(max_length=12, windows=3, window_overlap=2))
    assert starts == [0, 495, 990]
    assert window_starts(1000, 10, TextPolicy(max_length=12, windows=1)) == [0]


def test_build_windows_wraps_each_window_and_leaves_short_texts_as_one_input():
    from review_classifier.shared.text import build_windows

    policy = TextPolicy(max_length=6, windows=4, window_overlap=1)
    assert build_windows(range(3), [101], [102], policy) == [build_input_ids(range(3), [101], [102], policy)]
    wins = build_windows(range(10), [101], [102], policy)   # 4 content tokens a window, stride 3
    assert wins == [[101, 0, 1, 2, 3, 102], [101, 3, 4, 5, 6, 102], [101, 6, 7, 8, 9, 102]]
    one = TextPolicy(max_length=6, windows=1, truncation="head+tail", head_fraction=0.5)
    assert build_windows(range(10), [101], [102], one) == [[101, 0, 1, 8, 9, 102]]


def test_pooling_averages_each_texts_windows_and_keeps_single_rows_exactly():
    import numpy as np

    from review_classifier.shared.text import pool_windows

    rows = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0], [0.1, 0.2]], dtype=np.float32)
    pooled = pool_windows(rows, [1, 2, 1])
    assert pooled.tolist() == [[1.0, 2.0], [4.0, 6.5], [float(np.float32(0.1)), float(np.float32(0.2))]]
    assert pool_windows(rows, [1, 1, 1, 1]).tolist() == rows.astype(np.float64).tolist()


def test_window_settings_are_checked():
    with pytest.raises(ClassifierError, match="windows must be at least 1"):
        TextPolicy(windows=0)
    with pytest.raises(ClassifierError, match="window_overlap must be at least 0"):
        TextPolicy(windows=2, window_overlap=-1)
    from review_classifier.shared.text import window_starts        # an overlap past max_length / 2: half
    assert window_starts(30, 10, TextPolicy(max_length=12, windows=9, window_overlap=40)) == [0, 4, 8, 12, 16, 20]


def test_clip_chars_keeps_what_the_windows_can_reach():
    policy = TextPolicy(max_length=4, windows=3, window_overlap=1)
    limit = 4 * 3 * CHARS_PER_TOKEN
    text = "a" * limit + "b" * 50 + "c" * limit
    clipped = clip_chars(text, policy)
    assert clipped.startswith("a" * limit) and clipped.endswith("c" * limit) and "b" not in clipped
