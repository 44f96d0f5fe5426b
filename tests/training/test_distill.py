"""Distillation from saved teacher logits: the file and its provenance, teachers of any kind
(checkpoint or bundle, windows pooled), students of any architecture, and the soft targets
actually steering training."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import build_tiny_model, write_toy_csv
from tests.edge.conftest import export_bundle
from tests.training.conftest import toy_reviews
from review_classifier.shared.errors import ClassifierError
from review_classifier.training.config.settings import load_config
from review_classifier.training.compress.teacher import compute_teacher_logits, teacher_hash, write_teacher_logits
from review_classifier.training.data.teacher_logits import load_teacher_logits, save_teacher_logits, text_key

TRAIN_CLASSIFY = Path(sys.executable).with_name("train-classify")
LABELS = ["negative", "positive"]


def tiny_cfg(*extra: str):
    return load_config("tiny", ["max_length=48", "tensorboard=false", "precision=fp32", *extra])


def torch_logits(folder: Path, texts: list[str], cfg) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from review_classifier.training.data.text import encode_texts

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return np.concatenate([model(input_ids=torch.tensor([ids])).logits.numpy()
                               for ids in encode_texts(texts, tok, cfg.text_policy)])


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


def _inverted_teacher(cfg, path: Path) -> Path:
    """Logits that say the opposite of every training label, with a margin of 6."""
    from review_classifier.training.data.splits import load_splits

    train = load_splits(cfg)["train"]
    sign = np.where(np.asarray(train.labels) == 1, -3.0, 3.0)
    return save_teacher_logits(path, np.stack([-sign, sign], axis=1), train.texts,
                               {"labels": LABELS, "teacher": {"kind": "hand-made"}, "data": {"rows": len(train)}})


def test_training_follows_the_soft_targets(tiny_model_dir, tmp_path):
    """alpha=1: only the teacher's logits teach. A teacher that inverts every label yields a
    student that inverts them on unseen reviews; alpha=0 on the same file learns the labels."""
    from review_classifier.training.fit.run import run_training

    data = write_toy_csv(tmp_path / "reviews.csv", 320)
    common = [f"model={tiny_model_dir}", f"data={data}", "reduce_ratio=1.0", "epochs=4", "lr=3e-3",
              "warmup_ratio=0", "patience=0", "batch_size=16"]
    teacher = _inverted_teacher(tiny_cfg(*common), tmp_path / "inverted.npz")
    soft = run_training(tiny_cfg(*common, f"teacher_logits={teacher}", "distill_alpha=1.0",
                                 f"output_dir={tmp_path / 'soft'}"))
    hard = run_training(tiny_cfg(*common, f"teacher_logits={teacher}", "distill_alpha=0.0",
                                 f"output_dir={tmp_path / 'hard'}"))
    # the last epoch's accuracy on the true labels (best/ is picked by them, so it would hide this)
    assert hard["history"][-1]["valid_accuracy"] >= 0.8, hard["history"]
    assert soft["history"][-1]["valid_accuracy"] <= 0.2, soft["history"]
    assert soft["history"][-1]["train_accuracy"] <= 0.2, soft["history"]
    assert soft["teacher"]["sha256"] and soft["teacher"]["teacher"] == {"kind": "hand-made"}
    with pytest.raises(ClassifierError, match="distillation trains with engine=manual"):
        run_training(tiny_cfg(*common, f"teacher_logits={teacher}", "engine=trainer",
                              f"output_dir={tmp_path / 'trainer'}"))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(TRAIN_CLASSIFY), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_distill_cli_teaches_a_student_of_another_architecture_from_a_bundle(tmp_path):
    """BERT bundle (ONNX) -> DistilBERT checkpoint; the logits are computed once, and a rerun reuses them."""
    bundle = tmp_path / "teacher"
    export_bundle(bundle, LABELS, ["input_ids", "attention_mask", "token_type_ids"], seed=1, logit_scale=20.0)
    student = build_tiny_model(tmp_path / "student-base", distilbert=True)
    data = write_toy_csv(tmp_path / "reviews.csv", 200)
    sets = ["--recipe", "tiny", "--set", f"data={data}", "--set", "max_length=48", "--set", "tensorboard=false",
            "--set", "reduce_ratio=1.0", "--set", "precision=fp32"]
    run = _cli("distill", str(bundle), "--student", str(student), "--out", str(tmp_path / "run"), *sets, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "best" / "compression.json").read_text())
    assert report["teacher"]["teacher"]["kind"] == "bundle" and report["student_model"] == str(student)
    assert report["baseline"] is None and report["student_layers"] == 2
    assert json.loads((tmp_path / "run" / "best" / "config.json").read_text())["model_type"] == "distilbert"
    logits_file = tmp_path / "run" / "teacher_logits.npz"
    stamp = logits_file.stat().st_mtime_ns
    assert _cli("distill", str(bundle), "--student", str(student), "--out", str(tmp_path / "run"), *sets,
                cwd=tmp_path).returncode == 0
    assert logits_file.stat().st_mtime_ns == stamp   # the same teacher and data: not scored again

    # the same through the two-step path: teacher-logits, then train with the file
    assert _cli("teacher-logits", str(bundle), "--out", str(tmp_path / "t.npz"), *sets, cwd=tmp_path).returncode == 0
    np.testing.assert_array_equal(load_teacher_logits(tmp_path / "t.npz").logits, load_teacher_logits(logits_file).logits)

    no_student = _cli("distill", str(bundle), "--out", str(tmp_path / "x"), *sets, cwd=tmp_path)
    assert no_student.returncode != 0 and "Traceback" not in no_student.stderr
    assert no_student.stderr.strip().splitlines()[-1].startswith(
        f"train-classify: error: {bundle}: a bundle or a logits file teaches only a --student")


def test_an_mpnet_checkpoint_teaches_a_bert_student(tmp_path):
    """The accurate tier's architecture as teacher (no token_type_ids, relative attention bias)."""
    from review_classifier.training.compress.distil import distill_model
    from review_classifier.training.fit.model import encoder_layers, load_model

    teacher = build_tiny_model(tmp_path / "mpnet", mpnet=True, seed=4)
    student = build_tiny_model(tmp_path / "bert", seed=5)
    data = write_toy_csv(tmp_path / "reviews.csv", 160)
    cfg = tiny_cfg(f"data={data}", "reduce_ratio=1.0", f"output_dir={tmp_path / 'run'}", "distill_layers=1")
    report = distill_model(cfg, teacher, tmp_path / "run", student=str(student))
    assert report["teacher"]["teacher"]["kind"] == "checkpoint" and report["teacher_layers"] == 2
    best = load_model(cfg, report["model_dir"])
    assert type(best).__name__ == "BertForSequenceClassification" and len(encoder_layers(best)) == 1
    saved = load_teacher_logits(tmp_path / "run" / "teacher_logits.npz")
    np.testing.assert_allclose(saved.logits[:8], torch_logits(teacher, [t for t in _train_texts(cfg)[:8]], cfg),
                               atol=1e-4)


def _train_texts(cfg) -> list[str]:
    from review_classifier.training.data.splits import load_splits

    return load_splits(cfg)["train"].texts
