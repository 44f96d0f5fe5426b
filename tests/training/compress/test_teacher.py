"""Distillation from saved teacher logits: the file and its provenance, teachers of any kind
(checkpoint or bundle, windows pooled), students of any architecture, and the soft targets
actually steering training."""
from __future__ import annotations

import numpy as np
import pytest

from review_classifier.shared.errors import ClassifierError
from review_classifier.training.compress.teacher import compute_teacher_logits, teacher_hash, write_teacher_logits
from review_classifier.training.data.teacher_logits import load_teacher_logits, save_teacher_logits, text_key
from tests.edge.conftest import export_bundle
from tests.training.compress.builders import LABELS, tiny_cfg, torch_logits
from tests.training.conftest import toy_reviews


def test_checkpoint_teacher_logits_are_its_logits_and_carry_provenance(trained_tiny, tmp_path):
    cfg = tiny_cfg()
    reviews = toy_reviews(40, 3, "toy.csv")
    logits, prov = compute_teacher_logits(trained_tiny, reviews, cfg, fingerprint="f00d")
    np.testing.assert_allclose(logits, torch_logits(trained_tiny, reviews.texts, cfg), atol=1e-4)
    assert prov["teacher"] == {"kind": "checkpoint", "path": str(trained_tiny), "sha256": teacher_hash(trained_tiny)}
    assert prov["data"] == {"source": "toy.csv", "split": "train", "rows": 40, "fingerprint": "f00d"}
    assert prov["labels"] == LABELS and prov["text_policy"]["max_length"] == 48
    assert prov["teacher_train_accuracy"] == pytest.approx(float((logits.argmax(-1) == reviews.labels).mean()), abs=1e-4)

    path = save_teacher_logits(tmp_path / "t.npz", logits, reviews.texts, prov)
    loaded = load_teacher_logits(path)
    assert loaded.provenance["teacher"]["sha256"] == prov["teacher"]["sha256"]
    np.testing.assert_array_equal(loaded.logits, logits)
    # looked up by text: a subset, in another order, gets its own rows
    np.testing.assert_array_equal(loaded.for_reviews(reviews.subset([7, 2, 30]), LABELS), logits[[7, 2, 30]])


def test_bundle_teacher_scores_with_the_bundles_windows(tmp_path):
    from review_classifier.edge.model import EdgeClassifier
    from review_classifier.shared.logits import softmax

    bundle = tmp_path / "bundle"
    export_bundle(bundle, LABELS, ["input_ids", "attention_mask"], seed=3,
                  policy={"max_length": 16, "truncation": "head+tail", "head_fraction": 0.25}, logit_scale=50.0)
    reviews = toy_reviews(24, 5, "toy.csv")   # 4-30 words: most need more than one 16-token window
    one, prov1 = compute_teacher_logits(bundle, reviews, tiny_cfg())
    three, prov3 = compute_teacher_logits(bundle, reviews, tiny_cfg(), windows=3)
    assert prov1["teacher"]["kind"] == "bundle" and prov1["text_policy"]["windows"] == 1
    assert prov3["text_policy"]["windows"] == 3
    np.testing.assert_allclose(softmax(three.astype(np.float64)),
                               EdgeClassifier(bundle, windows=3).predict_proba(reviews.texts), atol=1e-5)
    assert np.abs(one - three).max() > 1e-3   # the windows changed what the teacher read


def test_a_logits_file_is_refused_for_other_labels_other_texts_or_damage(tmp_path):
    reviews = toy_reviews(10, 1, "toy.csv")
    prov = {"labels": LABELS, "teacher": {}, "data": {"rows": 10, "source": "toy.csv", "fingerprint": "ab12"}}
    path = save_teacher_logits(tmp_path / "t.npz", np.zeros((10, 2)), reviews.texts, prov)
    teacher = load_teacher_logits(path)
    with pytest.raises(ClassifierError, match=r"computed for labels \['negative', 'positive'\], but this run has"):
        teacher.for_reviews(reviews, ["positive", "negative"])
    other = toy_reviews(10, 1, "toy.csv")
    other.texts[6] = "a review the teacher never saw"
    with pytest.raises(ClassifierError, match=r"no teacher logits for 1 of 10 training reviews \(first: training row 7\); "
                                              r"they were computed on 10 reviews of 'toy.csv' \(fingerprint ab12\)"):
        teacher.for_reviews(other, LABELS)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ClassifierError, match="bad.npz: not a teacher logits file"):
        load_teacher_logits(tmp_path / "bad.npz")
    with pytest.raises(ClassifierError, match="nope.npz not found"):
        load_teacher_logits(tmp_path / "nope.npz")
    with pytest.raises(ClassifierError, match="must end in .npz"):
        save_teacher_logits(tmp_path / "t.bin", np.zeros((10, 2)), reviews.texts, prov)
    assert not (tmp_path / "t.bin").exists()
    with pytest.raises(ClassifierError, match="must end in .npz"):   # before the teacher is even looked for
        write_teacher_logits(tmp_path / "t.bin", tmp_path / "no-such-teacher", reviews, tiny_cfg())
    assert text_key("é") != text_key("e") and len(text_key("x")) == 32
