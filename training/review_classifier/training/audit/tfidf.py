"""TF-IDF word 1-2 grams: the features of the classic baseline (benchmarks/baseline_tfidf.py) and
of the audit's default cross-fitted model (training.audit.probs)."""
from __future__ import annotations

import re

import numpy as np

_BR = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)


def clean_for_tfidf(text: str) -> str:
    return _BR.sub(" ", text).lower()


def make_vectorizer(min_df: int = 2):
    """Word 1-2 grams, sublinear tf, lowercased, <br /> removed."""
    # lazy: scikit-learn (1.2 s) only when a vectorizer is made
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True, preprocessor=clean_for_tfidf,
                           dtype=np.float32)
