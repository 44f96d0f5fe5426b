"""shared.labels: raw label values -> ids, binary and multi-class."""
from __future__ import annotations

import pytest

from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.labels import LabelMap


def test_imdb_labels_and_common_aliases():
    lm = LabelMap()
    assert [lm.to_id(v) for v in ("negative", "positive", "0", "1", "neg", "POS", " positive ")] == [0, 1, 0, 1, 0, 1, 1]
    assert lm.id2label == {0: "negative", 1: "positive"} and lm.label2id == {"negative": 0, "positive": 1}


def test_multiclass_and_case_insensitive_names():
    lm = LabelMap(("sad", "neutral", "happy"), {})
    assert lm.num_labels == 3 and lm.to_id("Happy") == 2 and lm.to_id("neutral") == 1


def test_unknown_label_names_where_and_what_is_allowed():
    with pytest.raises(ClassifierError, match=r"unknown label 'meh' at data.csv, row 7; expected one of \['negative', 'positive'\]"):
        LabelMap().to_id("meh", "data.csv, row 7")


@pytest.mark.parametrize("names,aliases", [(("only",), {}), (("a", "a"), {}), (("a", "b"), {"x": "c"})])
def test_invalid_label_maps_are_refused(names, aliases):
    with pytest.raises(ClassifierError):
        LabelMap(names, aliases)
