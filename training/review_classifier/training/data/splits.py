"""Train, valid and test splits: stratified and seeded, optionally de-duplicated; and the same
splits written out as CSV files (`train-classify split-csv`)."""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from review_classifier.shared.atomic import atomic_path
from review_classifier.shared.errors import ClassifierError
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.data.reviews import Reviews, data_fingerprint
from review_classifier.training.data.sources import check_row, csv_rows, load_reviews

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def load_splits(cfg: TrainConfig) -> dict[str, Reviews]:
    """{"train", "valid", "test"}: test from cfg.test_data or `test_size` split off cfg.data,
    valid split off train, then `reduce_ratio` of each. With `dedupe`, repeated texts are
    dropped before splitting, and test texts that also occur in train are dropped."""
    data = load_reviews(cfg.data, cfg)
    if cfg.dedupe:
        data = dedupe_reviews(data)
    if cfg.test_data:
        test = load_reviews(cfg.test_data, cfg)
        if cfg.dedupe:
            test = dedupe_reviews(test, seen={dedupe_key(t) for t in data.texts})
            if not len(test):
                raise ClassifierError(f"{test.source}: every test review also occurs in {data.source}")
    else:
        data, test = split_reviews(data, cfg.test_size, cfg.seed)
    train, valid = split_reviews(data, cfg.valid_size, cfg.seed)
    splits = {"train": train, "valid": valid, "test": test}
    return {k: reduce_reviews(v, cfg.reduce_ratio, cfg.seed) for k, v in splits.items()}


def _split_indices(labels: Sequence[int], size: float, seed: int, what: str,
                   names: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (rest, held-out) positions: each class gives `size` of its rows (at least one,
    never all), the total is round(size * n) when the classes allow it. Both come shuffled."""
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if size <= 0 or not len(y):
        return np.arange(len(y)), np.arange(0)
    classes, counts = np.unique(y, return_counts=True)
    small = class_below(y, 2, names)
    if small:
        name, n = small
        raise ClassifierError(f"{what}: class {name!r} has only {n} row; need at least 2 per class for a "
                              "stratified split: add rows, or drop the class from labels=")
    quota = size * counts
    take = np.floor(quota + 1e-9).astype(np.int64)
    extra = int(round(size * len(y))) - int(take.sum())
    if extra > 0:  # largest remainders first; ties go to the lower class id
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:extra]] += 1
    take = np.clip(take, 1, counts - 1)
    held = []
    for c, k in zip(classes, take):
        held.append(rng.permutation(np.flatnonzero(y == c))[:k])
    held_idx = np.concatenate(held)
    mask = np.zeros(len(y), dtype=bool)
    mask[held_idx] = True
    return rng.permutation(np.flatnonzero(~mask)), rng.permutation(held_idx)


def class_below(labels: Sequence[int], minimum: int, names: Sequence[str] = ()) -> tuple[str, int] | None:
    """(name, rows) of the first class with fewer than `minimum` rows, or None."""
    classes, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    for c, n in zip(classes, counts):
        if n < minimum:
            return (names[c] if c < len(names) else str(c)), int(n)
    return None


def split_reviews(reviews: Reviews, size: float, seed: int) -> tuple[Reviews, Reviews]:
    """Stratified (rest, held-out) split: `size` of every class is held out; same seed, same split."""
    rest, held = _split_indices(reviews.labels, size, seed, reviews.source, reviews.names)
    return reviews.subset(rest), reviews.subset(held)


def reduce_reviews(reviews: Reviews, ratio: float, seed: int) -> Reviews:
    """Keep a stratified `ratio` share (at least one row per class), for quick runs."""
    if ratio >= 1:
        return reviews
    return split_reviews(reviews, ratio, seed)[1]


def dedupe_reviews(reviews: Reviews, seen: set[str] | None = None) -> Reviews:
    """Drop repeated texts (compared with whitespace collapsed), keeping the first; with `seen`,
    also drop texts found there (test reviews that also appear in train)."""
    seen = set(seen or ())
    own: set[str] = set()
    keep = []
    for i, text in enumerate(reviews.texts):
        key = dedupe_key(text)
        if key not in own and key not in seen:
            keep.append(i)
        own.add(key)
    if len(keep) < len(reviews):
        log.info("%s: dropped %d duplicate review(s)", reviews.source, len(reviews) - len(keep))
    return reviews.subset(keep)


def dedupe_key(text: str) -> str:
    return " ".join(text.split())


def split_csv(src: Path, out_dir: Path, valid_size: float, test_size: float, seed: int,
              text_column: str, label_column: str, cfg: TrainConfig | None = None) -> dict[str, Path]:
    """Write stratified train/valid/test CSVs (all original columns) into `out_dir`, atomically.

    `valid_size` is a share of what is left after the test split, as in `load_splits`, so the
    files hold exactly the splits that load_splits makes from `src` with the same seed.
    """
    src, out_dir = Path(src), Path(out_dir)
    labels = (cfg or TrainConfig()).label_map
    rows: list[dict] = []
    ids: list[int] = []
    header: list[str] = []
    for row_no, line_no, row in csv_rows(src, (text_column, label_column)):
        ids.append(check_row(src, row_no, line_no, row, text_column, label_column, labels)[1])
        rows.append(row)
        header = header or list(row)
    if not rows:
        raise ClassifierError(f"{src}: no rows to split")
    rest, test = _split_indices(ids, test_size, seed, str(src), labels.names)
    train, valid = _split_indices([ids[i] for i in rest], valid_size, seed, str(src), labels.names)
    parts = {"train": rest[train], "valid": rest[valid], "test": test}
    written = {}
    for name, idx in parts.items():
        path = out_dir / f"{name}.csv"
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", errors="surrogateescape",
                                            newline="") as f:
            w = csv.DictWriter(f, fieldnames=header)
            w.writeheader()
            w.writerows(rows[i] for i in idx)
        written[name] = path
    return written


def calib_and_valid(cfg: TrainConfig, data: str = "") -> tuple[Reviews, Reviews, str]:
    """(calibration reviews, validation reviews, fingerprint of the data they came from): from
    `data` split in two halves (stratified), or from the config's data: a cfg.calib_samples sample
    of train and the valid split (then the fingerprint is the training run's own)."""
    if data:
        rest, valid = split_reviews(load_reviews(data, cfg), 0.5, cfg.seed)
        fingerprint = data_fingerprint({"calib": rest, "valid": valid})
    else:
        splits = load_splits(cfg)
        rest, valid, fingerprint = splits["train"], splits["valid"], data_fingerprint(splits)
    calib = reduce_reviews(rest, min(1.0, cfg.calib_samples / max(len(rest), 1)), cfg.seed)
    return calib, valid, fingerprint
