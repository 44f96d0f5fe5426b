"""The one cache folder of the project: unpacked bundle archives, finished-run records, unzipped
model weights, downloads and tokenised datasets all live below it, in a sub-folder each.

$REVIEW_CLASSIFIER_CACHE if set, else $XDG_CACHE_HOME/review-classifier, else
~/.cache/review-classifier. (The training job's `cache_dir` setting overrides it for its data.)
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    if os.environ.get("REVIEW_CLASSIFIER_CACHE"):
        return Path(os.environ["REVIEW_CLASSIFIER_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "review-classifier"
