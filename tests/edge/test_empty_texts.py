"""edge.empty_texts: the one empty-text rule both engines apply, and its messages."""
from __future__ import annotations

import pytest

from review_classifier.edge import empty_texts
from review_classifier.shared.errors import ClassifierError


def test_an_unknown_policy_is_refused_with_the_choices():
    empty_texts.check_policy("mark")
    empty_texts.check_policy("error")
    with pytest.raises(ClassifierError, match=r"--empty must be one of \('mark', 'error'\), got 'skip'"):
        empty_texts.check_policy("skip")


@pytest.mark.parametrize("text", ["", "   ", "\t\n", "\u00a0\u2003"])
def test_under_mark_a_blank_text_is_no_error(text):
    assert empty_texts.record_error(text, None, "r.txt:3", "mark", skipping=False) is None


@pytest.mark.parametrize("text", ["", "  \t ", "\u3000"])
def test_under_error_a_blank_text_stops_the_run_naming_its_place(text):
    with pytest.raises(ClassifierError) as e:
        empty_texts.record_error(text, None, "reviews.csv:row 7", "error", skipping=False)
    assert str(e.value) == "reviews.csv:row 7: empty text; remove it or use --empty mark"


def test_under_error_with_skipping_a_blank_text_is_rejected_for_its_reason():
    assert empty_texts.record_error(" ", None, "r.txt:2", "error", skipping=True) == "empty text"


def test_a_text_with_words_or_an_earlier_error_is_left_as_it_is():
    assert empty_texts.record_error("fine film", None, "r.txt:1", "error", skipping=False) is None
    assert empty_texts.record_error("", "bad UTF-8", "r.txt:1", "error", skipping=False) == "bad UTF-8"


def test_the_closing_warning_counts_and_names_the_first_places():
    assert empty_texts.warning(3, ["a.txt:1", "a.txt:4"]) == (
        "warning: 3 empty text(s) got an empty label (first at a.txt:1; a.txt:4); --empty error refuses them")
