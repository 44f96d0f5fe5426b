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
