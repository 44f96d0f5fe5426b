"""train-classify audit: planted label errors are found, out-of-sample means out of sample,
duplicates and markup are listed, bad input is one line."""
from __future__ import annotations

import random

import numpy as np
import pytest

from review_classifier.shared.errors import ClassifierError
from review_classifier.training.audit.label_issues import read_audit_rows, run_audit
from review_classifier.training.audit.probs import AuditOptions, audit_config, cross_fit_linear, fold_ids
from review_classifier.training.config.settings import load_config
from tests.conftest import NEGATIVE, POSITIVE
from tests.training.audit.builders import cue_text, issues_of, planted_csv


def test_a_rows_probabilities_do_not_depend_on_its_own_label():
    """Cross-fitting: the model that scores a row never saw that row's label."""
    from review_classifier.training.data.reviews import Reviews

    rng = random.Random(1)
    texts = [cue_text([POSITIVE, NEGATIVE][i % 2], rng) for i in range(200)]
    labels = np.array([1 - i % 2 for i in range(200)])
    cfg = load_config("default")
    folds = fold_ids(labels, 4, 0)
    quiet = lambda m: None   # noqa: E731
    before, _ = cross_fit_linear(Reviews(texts, labels.tolist(), "t"), labels, folds, cfg, AuditOptions(folds=4), quiet)
    changed = labels.copy()
    changed[7] = 1 - changed[7]
    after, _ = cross_fit_linear(Reviews(texts, changed.tolist(), "t"), changed, folds, cfg, AuditOptions(folds=4), quiet)
    assert np.array_equal(before[7], after[7])
    assert not np.allclose(before[folds != folds[7]], after[folds != folds[7]])   # the other folds did learn from it


def test_folds_are_stratified_and_even():
    labels = np.array([0] * 50 + [1] * 20 + [2] * 7)
    folds = fold_ids(labels, 5, 3)
    for c in range(3):
        counts = np.bincount(folds[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1


def test_teacher_logits_replace_cross_fitting(tmp_path):
    from review_classifier.training.data.teacher_logits import save_teacher_logits

    data, flipped = planted_csv(tmp_path / "r.csv", ["negative", "positive"], [NEGATIVE, POSITIVE], 60, 4)
    cfg = load_config("default")
    reviews = read_audit_rows(data, cfg).reviews
    truth = np.array(reviews.labels)
    for row in flipped:
        truth[row - 1] = 1 - truth[row - 1]
    logits = np.where(np.eye(2)[truth] > 0, 3.0, -3.0)   # a confident teacher that knows the true labels
    teacher = save_teacher_logits(tmp_path / "t.npz", logits, reviews.texts, {"labels": cfg.labels})
    summary = run_audit(data, cfg, AuditOptions(teacher_logits=str(teacher)), tmp_path / "a", log=lambda m: None)
    assert {int(r["row"]) for r in issues_of(tmp_path / "a")} == set(flipped)
    assert summary["method"]["kind"] == "teacher logits"
    save_teacher_logits(tmp_path / "short.npz", logits[:-1], reviews.texts[:-1], {"labels": cfg.labels})
    with pytest.raises(ClassifierError, match="no teacher logits for 1 of 60"):
        run_audit(data, cfg, AuditOptions(teacher_logits=str(tmp_path / "short.npz")), tmp_path / "b",
                  log=lambda m: None)


def test_fine_tuning_per_fold_scores_every_row_once(tmp_path, tiny_model_dir):
    """A training recipe as the audit's model: one fine-tuning per fold (the tiny BERT, one epoch)."""
    data, _ = planted_csv(tmp_path / "r.csv", ["negative", "positive"], [NEGATIVE, POSITIVE], 48, 2)
    cfg, model = audit_config("tiny", [f"model={tiny_model_dir}", "max_length=32", "reduce_ratio=1.0", "epochs=1",
                                       "tensorboard=false", "valid_size=0.2", f"cache_dir={tmp_path / 'cache'}",
                                       "sample_predictions=0"])
    summary = run_audit(data, cfg, AuditOptions(model=model, folds=2), tmp_path / "a", log=lambda m: None)
    with np.load(tmp_path / "a" / "probabilities.npz") as z:
        probs, rows = z["probabilities"], z["row"]
    assert probs.shape == (48, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert sorted(rows.tolist()) == list(range(1, 49))
    assert [r["fold"] for r in summary["method"]["runs"]] == [0, 1]


def test_embed_model_mean_pools_under_the_mask(tmp_path, tiny_model_dir):
    from review_classifier.training.audit.probs import sentence_embeddings

    cfg = load_config("default", [f"model={tiny_model_dir}", "max_length=32"])
    texts = ["short", "a much longer text that needs padding in a batch with the short one", "short"]
    emb = sentence_embeddings(texts, cfg, log=lambda m: None)
    assert emb.shape == (3, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    alone = sentence_embeddings(["short"], cfg, log=lambda m: None)
    assert np.allclose(emb[0], alone[0], atol=1e-5) and np.allclose(emb[0], emb[2], atol=1e-6)
    data, _ = planted_csv(tmp_path / "r.csv", ["negative", "positive"], [NEGATIVE, POSITIVE], 40, 2)
    cfg, model = audit_config("embed", [f"model={tiny_model_dir}", "max_length=32"])
    summary = run_audit(data, cfg, AuditOptions(model=model, folds=2), tmp_path / "a", log=lambda m: None)
    assert summary["method"]["model"] == "embed" and summary["scored"] == 40
