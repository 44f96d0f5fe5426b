"""Out-of-sample class probabilities for every row of a labelled data set: the audit's input.

A row's probabilities must come from a model that never saw that row's label, or a model that
memorised a wrong label vouches for it. Two ways to get them:

- cross-fitting: K stratified folds; for each, a model is trained on the other K-1 folds and
  scores the held-out one, so every row is scored exactly once, out of sample. The model is a
  setting (`AuditOptions.model`):
  - `tfidf` (the default): TF-IDF word 1-2 grams + logistic regression. The vocabulary and
    idf weights are fitted once on all texts (no labels are used for that); the classifier is
    fitted per fold. About a minute for 25,000 IMDB reviews on 2 cores.
  - `embed`: the frozen encoder's sentence embedding (cfg.model, mean-pooled over the tokens,
    as sentence-transformers trained MiniLM), computed once for all rows, and a logistic
    regression per fold.
  - a training recipe (tiny, default, gpu, ... or a .toml): the recipe fine-tuned per fold
    with `run_training`, for users with the compute (K full trainings).
- a teacher-logits file (`train-classify teacher-logits`), from a teacher that never trained on
  these rows: its logits, softmaxed. The file's rows are matched by text; a missing text stops
  the audit with one line.
"""
from __future__ import annotations

import csv
import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from review_classifier.shared.atomic import atomic_path
from review_classifier.shared.bundle import sha256_file
from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.logits import log_softmax, pad_ids
from review_classifier.training.audit.tfidf import make_vectorizer
from review_classifier.training.bundle.export import batches
from review_classifier.training.config.settings import TrainConfig, load_config
from review_classifier.training.data.reviews import Reviews
from review_classifier.training.data.splits import class_below
from review_classifier.training.data.teacher_logits import load_teacher_logits
from review_classifier.training.data.text import encode_texts
from review_classifier.training.fit.device import progress_bar
from review_classifier.training.fit.model import load_tokenizer
from review_classifier.training.fit.model_sources import resolve_model_path

CHEAP_MODELS = ("tfidf", "embed")
# cleanlab.filter.find_label_issues' filter_by values: its default, prune_by_noise_rate, flags as many
# rows as the estimated noise; confident_learning flags fewer, more surely wrong rows (measured on
# IMDB and R8 in docs/audit.md); the margin and self-confidence rules rank by one score each.
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
           "low_normalized_margin", "low_self_confidence")
LOGREG_C = {"tfidf": 4.0, "embed": 4.0}   # inverse regularisation: the TF-IDF baseline's C on IMDB valid
EMBED_BATCH = 32


@dataclasses.dataclass
class AuditOptions:
    """How the audit gets its probabilities and what it writes (the command's flags)."""
    model: str = "tfidf"          # tfidf, embed, or a training recipe to fine-tune per fold
    folds: int = 5
    seed: int = 42
    teacher_logits: str = ""      # a .npz from a teacher that never trained on these rows
    excerpt_chars: int = 160
    filter_by: str = "prune_by_noise_rate"   # cleanlab's rule for which rows are flagged (FILTERS)

    def check(self) -> None:
        if self.filter_by not in FILTERS:
            raise ClassifierError(f"--filter-by must be one of {', '.join(FILTERS)}, got {self.filter_by!r}")
        if self.folds < 2:
            raise ClassifierError(f"--folds must be at least 2, got {self.folds}")
        if self.excerpt_chars < 20:
            raise ClassifierError(f"--excerpt must be at least 20 characters, got {self.excerpt_chars}")


def fold_ids(labels: np.ndarray, k: int, seed: int, names: tuple[str, ...] = ()) -> np.ndarray:
    """Each row's fold, 0..k-1, stratified: each class's rows are shuffled and dealt out in turn,
    so every fold holds each class's share (within one row). Every class needs k rows."""
    labels = np.asarray(labels, dtype=np.int64)
    small = class_below(labels, k, names)
    if small:
        name, n = small
        raise ClassifierError(f"class {name!r} has only {n} row(s); {k}-fold cross-fitting needs at least {k} per "
                              f"class: add rows, lower --folds, or drop the class from labels=")
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        folds[rows] = (np.arange(len(rows)) + offset) % k
        offset += len(rows)   # the next class starts where this one stopped: folds stay even in size
    return folds


def out_of_sample_probs(reviews: Reviews, cfg: TrainConfig, opts: AuditOptions, work: Path | None = None,
                        log: Callable[[str], None] = print) -> tuple[np.ndarray, dict]:
    """(probabilities (rows x labels), how they were made) for every review, each out of sample."""
    t0 = time.perf_counter()
    if opts.teacher_logits:
        probs, method = _teacher_probs(reviews, cfg, opts.teacher_logits, log)
    else:
        labels = np.asarray(reviews.labels, dtype=np.int64)
        folds = fold_ids(labels, opts.folds, opts.seed, tuple(cfg.labels))
        if opts.model in CHEAP_MODELS:
            probs, method = cross_fit_linear(reviews, labels, folds, cfg, opts, log)
        else:
            if work is None:
                raise ValueError("fine-tuning per fold needs a work folder")
            probs, method = _cross_fit_recipe(reviews, folds, cfg, opts, work, log)
        method.update(folds=opts.folds, fold_seed=opts.seed, fold_sizes=np.bincount(folds).tolist())
    method["seconds"] = round(time.perf_counter() - t0, 1)
    return probs, method


def _teacher_probs(reviews: Reviews, cfg: TrainConfig, path: str, log) -> tuple[np.ndarray, dict]:
    teacher = load_teacher_logits(path)
    logits = teacher.for_reviews(reviews, cfg.labels, path)
    log(f"audit: probabilities from the teacher logits in {path} (the teacher must never have trained on "
        "these rows, or it vouches for the labels it memorised)")
    prov = teacher.provenance
    return np.exp(log_softmax(logits)), {
        "kind": "teacher logits", "file": str(path), "sha256": sha256_file(path),
        **{k: prov.get(k) for k in ("teacher", "data", "teacher_train_accuracy")}}


def cross_fit_linear(reviews: Reviews, labels: np.ndarray, folds: np.ndarray, cfg: TrainConfig,
                     opts: AuditOptions, log) -> tuple[np.ndarray, dict]:
    """TF-IDF or frozen-encoder features (computed once), a logistic regression per fold: each
    fold's rows scored by the model fitted on the others."""
    from sklearn.linear_model import LogisticRegression  # lazy: scikit-learn (1.2 s) for the cheap models only

    if opts.model == "tfidf":
        log(f"audit: TF-IDF features of {len(reviews):,} texts")
        features = make_vectorizer(min_df=2).fit_transform(reviews.texts)
        method = {"kind": "cross-fitted", "model": "tfidf", "features": "TF-IDF word 1-2 grams, sublinear tf, "
                  "min_df 2, fitted once on all texts (no labels)", "feature_count": int(features.shape[1])}
    else:
        features = sentence_embeddings(reviews.texts, cfg, log)
        method = {"kind": "cross-fitted", "model": "embed", "encoder": cfg.model, "max_length": cfg.max_length,
                  "features": "frozen encoder, mean-pooled token states, L2-normalised, computed once"}
    c = LOGREG_C[opts.model]
    method["classifier"] = f"LogisticRegression(C={c}), one per fold"
    probs = np.zeros((len(labels), len(cfg.labels)), dtype=np.float64)
    bar, step = progress_bar(opts.folds, "cross-fitting", log, unit="fold")
    for k in range(opts.folds):
        train, held = folds != k, folds == k
        clf = LogisticRegression(C=c, max_iter=2000, random_state=opts.seed).fit(features[train], labels[train])
        probs[np.ix_(held, clf.classes_)] = clf.predict_proba(features[held])
        step(1)
    bar.close()
    return probs, method


def sentence_embeddings(texts: list[str], cfg: TrainConfig, log) -> np.ndarray:
    """The frozen encoder's sentence embedding of each text: token states mean-pooled under the
    attention mask, L2-normalised (sentence-transformers' pooling for MiniLM), cut by cfg's policy."""
    from transformers import AutoModel  # lazy: transformers (2.4 s) for --recipe embed only

    tokenizer = load_tokenizer(cfg)
    encoder = AutoModel.from_pretrained(resolve_model_path(cfg.model)).eval()
    ids = encode_texts(texts, tokenizer, cfg.text_policy)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
             if n in getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"])]
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    bar, step = progress_bar(len(texts), "sentence embeddings", log, unit="text")
    with torch.inference_mode():
        for idx in batches(ids, EMBED_BATCH):
            feeds = {k: torch.from_numpy(v) for k, v in pad_ids([ids[i] for i in idx], names,
                                                                 tokenizer.pad_token_id or 0).items()}
            states = encoder(**feeds).last_hidden_state
            mask = feeds["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
            step(len(idx))
    bar.close()
    return out


def _cross_fit_recipe(reviews: Reviews, folds: np.ndarray, cfg: TrainConfig, opts: AuditOptions, work: Path,
                      log) -> tuple[np.ndarray, dict]:
    """Fine-tune cfg (a training recipe) once per fold on the other folds; score the held-out fold."""
    # lazy: the training stack (the loop, tensorboard, transformers), for a fine-tuned recipe only
    from review_classifier.training.compress.teacher import compute_teacher_logits
    from review_classifier.training.fit.run import run_training

    probs = np.zeros((len(reviews), len(cfg.labels)), dtype=np.float64)
    runs = []
    for k in range(opts.folds):
        held = np.flatnonzero(folds == k)
        rest = np.flatnonzero(folds != k)
        fold_dir = work / f"fold{k}"
        data = write_labelled_csv(fold_dir / "train.csv", reviews.subset(rest), cfg)
        test = write_labelled_csv(fold_dir / "held_out.csv", reviews.subset(held), cfg)
        log(f"audit: fold {k + 1}/{opts.folds}: fine-tuning on {len(rest):,} rows, scoring {len(held):,}")
        fold_cfg = dataclasses.replace(cfg, data=str(data), test_data=str(test), output_dir=str(fold_dir / "run"),
                                       text_column="text", label_column="label", label_aliases={},
                                       test_size=0.0, reduce_ratio=1.0, dedupe=False, teacher_logits="")
        result = run_training(fold_cfg)
        logits, _ = compute_teacher_logits(result["best_dir"], reviews.subset(held), fold_cfg, log=log)
        probs[held] = np.exp(log_softmax(logits))
        runs.append({"fold": k, "run": str(fold_dir / "run"), "held_out_accuracy": result["test"]["accuracy"]})
    return probs, {"kind": "cross-fitted", "model": f"fine-tuned per fold ({cfg.model}, recipe settings)",
                   "runs": runs}


def write_labelled_csv(path: Path, reviews: Reviews, cfg: TrainConfig) -> Path:
    """text,label rows (label names), for a fold's training run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((t, cfg.labels[y]) for t, y in zip(reviews.texts, reviews.labels))
    return path


def audit_config(recipe: str, overrides: list[str]) -> tuple[TrainConfig, str]:
    """(config, model): the cheap models read labels and columns from the default recipe (+ overrides);
    any other recipe is also the fine-tuning recipe."""
    if recipe in CHEAP_MODELS:
        return load_config("default", overrides), recipe
    return load_config(recipe, overrides), recipe
