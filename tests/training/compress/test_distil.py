"""Pruning reaches its sparsity and stays there through fine-tuning; distillation yields a smaller student."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from review_classifier.shared.errors import ClassifierError
from review_classifier.training.compress.distil import distill_model
from review_classifier.training.compress.measure import COMPRESSION_FILE
from review_classifier.training.compress.prune import prune_model
from review_classifier.training.data.teacher_logits import load_teacher_logits, save_teacher_logits
from review_classifier.training.fit.model import encoder_layers, load_model
from tests.conftest import build_tiny_model, write_toy_csv
from tests.edge.conftest import export_bundle
from tests.training.compress.builders import LABELS, TRAIN_CLASSIFY, compress_cfg, tiny_cfg, torch_logits


def test_student_takes_the_base_models_first_layers(four_layer_teacher):
    cfg = compress_cfg(four_layer_teacher, Path("unused"), "distill_layers=2")
    teacher = load_model(compress_cfg(four_layer_teacher, Path("unused")), str(four_layer_teacher))
    student = load_model(cfg)   # the base model cfg.model, cut to its first 2 layers
    assert len(encoder_layers(student)) == 2 and student.config.num_hidden_layers == 2
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    assert all(torch.equal(s_sd[k], t_sd[k]) for k in s_sd)
    assert any(".layer.3." in k for k in t_sd) and not any(".layer.2." in k for k in s_sd)
    from review_classifier.shared.errors import ClassifierError
    with pytest.raises(ClassifierError, match="distill_layers must be between 1 and 4 for this 4-layer model, got 5"):
        load_model(compress_cfg(four_layer_teacher, Path("unused"), "distill_layers=5"))


def test_distill_model_produces_a_smaller_faster_student(four_layer_teacher, tmp_path):
    data = write_toy_csv(tmp_path / "reviews.csv", 240)
    # distill_layers 0 (the default) with no --student: half of the teacher's layers
    cfg = compress_cfg(four_layer_teacher, tmp_path / "student", f"data={data}", "distill_epochs=1",
                       "reduce_ratio=1.0")
    report = distill_model(cfg, four_layer_teacher, tmp_path / "student")
    assert (report["teacher_layers"], report["student_layers"]) == (4, 2)
    assert report["compressed"]["parameters"] < report["baseline"]["parameters"]
    assert report["compressed"]["file_bytes"] < report["baseline"]["file_bytes"]
    assert 0.0 <= report["compressed"]["accuracy"] <= 1.0
    assert report["teacher"]["teacher"]["kind"] == "checkpoint"
    from review_classifier.training.data.splits import load_splits
    assert report["teacher"]["data"]["rows"] == len(load_splits(cfg)["train"]) > 100   # the train split only
    student = load_model(cfg, report["model_dir"])
    assert len(encoder_layers(student)) == 2
    assert json.loads((Path(report["model_dir"]) / COMPRESSION_FILE).read_text())["method"] == "distillation"


def test_a_checkpoint_with_other_labels_is_refused_not_reheaded(tiny_model_dir, tmp_path):
    from review_classifier.shared.errors import ClassifierError

    swapped = compress_cfg(tiny_model_dir, tmp_path / "x", "labels=positive,negative")
    with pytest.raises(ClassifierError, match=r"trained for labels \['negative', 'positive'\] \(in another order"):
        load_model(swapped, str(tiny_model_dir))
    three = compress_cfg(tiny_model_dir, tmp_path / "x", "labels=red,green,blue")
    with pytest.raises(ClassifierError, match=r"\(2 labels, not 3 than the"):
        prune_model(three, tiny_model_dir, None, tmp_path / "pruned")


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
