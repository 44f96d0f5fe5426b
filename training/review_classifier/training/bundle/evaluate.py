"""Score labelled reviews with a model bundle through the edge runtime: accuracy, macro F1,
per-class scores, confusion matrix and throughput (what the original compressor test script did)."""
from __future__ import annotations

import json
import os
import time

from review_classifier.edge.model import EdgeClassifier
from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.bundle import load_bundle
from review_classifier.shared.metrics import classification_report
from review_classifier.training.config.settings import TrainConfig, load_config
from review_classifier.training.data.sources import load_reviews


def evaluate_bundle(bundle_path: str | os.PathLike, reviews, *, threads: int | None = None) -> dict:
    """`reviews` (training.data.reviews.Reviews) must use the bundle's label order for its class ids."""
    clf = EdgeClassifier(bundle_path, threads=threads)
    if not len(reviews):
        raise ClassifierError(f"{reviews.source}: no reviews to evaluate")
    names = getattr(reviews, "names", ())
    if names and list(names) != list(clf.labels):
        raise ClassifierError(f"{reviews.source} uses labels {list(names)} but bundle {bundle_path} has "
                              f"{clf.labels}; load the data with labels={','.join(clf.labels)}")
    started = time.perf_counter()
    probs = clf.predict_proba(reviews.texts)
    seconds = time.perf_counter() - started
    report = classification_report(list(reviews.labels), probs.argmax(-1).tolist(), clf.labels)
    report.update({
        "bundle": str(bundle_path), "data": reviews.source, "precision": clf.manifest.precision,
        "seconds": round(seconds, 3), "reviews_per_s": round(len(reviews) / max(seconds, 1e-9), 2),
        "threads": clf.threads,
    })
    return report


def evaluate_bundle_on(bundle_path: str | os.PathLike, data: str, recipe: str = "default",
                       overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """evaluate_bundle on a labelled data source read with the recipe's columns and aliases,
    its labels taken in the bundle's order."""
    manifest, _ = load_bundle(bundle_path)
    cfg: TrainConfig = load_config(recipe, overrides)
    if list(cfg.labels) != list(manifest.labels):   # read the data's labels in the bundle's order
        cfg = load_config(recipe, [*overrides, f"labels={json.dumps(manifest.labels)}", "label_aliases={}"])
    return evaluate_bundle(bundle_path, load_reviews(data, cfg))
