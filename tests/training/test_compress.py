"""Pruning reaches its sparsity and stays there through fine-tuning; distillation yields a smaller student."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from tests.conftest import build_tiny_model, toy_review, write_toy_csv
from review_classifier.training.compress.distil import distill_model
from review_classifier.training.compress.measure import COMPRESSION_FILE
from review_classifier.training.compress.prune import encoder_linears, encoder_sparsity, prune_encoder, prune_model
from review_classifier.training.fit.optimization import kd_loss
from review_classifier.training.config.settings import load_config
from review_classifier.training.fit.model import encoder_layers, load_model, load_tokenizer
from review_classifier.training.data.text import encode_texts


def toy_tokenized(model_dir: Path, cfg, n_train: int = 160, n_valid: int = 48, seed: int = 0):
    from datasets import Dataset, DatasetDict

    tok = load_tokenizer(cfg, str(model_dir))
    rng = random.Random(seed)

    def split(n):
        labels = [i % 2 for i in range(n)]
        ids = encode_texts([toy_review(y, rng) for y in labels], tok, cfg.text_policy)
        return Dataset.from_dict({"input_ids": ids, "labels": labels, "length": [len(x) for x in ids]})

    return DatasetDict(train=split(n_train), valid=split(n_valid))


def compress_cfg(model_dir: Path, out: Path, *extra: str):
    return load_config("tiny", [f"model={model_dir}", f"output_dir={out}", "max_length=48", "batch_size=16",
                                "lr=3e-3", "tensorboard=false", "precision=fp32", "patience=0",
                                "warmup_ratio=0", *extra])


@pytest.fixture(scope="session")
def four_layer_teacher(tmp_path_factory) -> Path:
    """A 4-layer tiny BERT (random weights) so a 2-layer student is strictly smaller."""
    from transformers import AutoModelForSequenceClassification, AutoConfig

    folder = build_tiny_model(tmp_path_factory.mktemp("teacher") / "model")
    config = AutoConfig.from_pretrained(folder)
    config.num_hidden_layers = 4
    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    return folder


def test_prune_encoder_hits_the_target_sparsity_on_encoder_linears_only(tiny_model_dir):
    cfg = compress_cfg(tiny_model_dir, Path("unused"))
    model = load_model(cfg, str(tiny_model_dir))
    classifier_before = model.classifier.weight.detach().clone()
    prune_encoder(model, 0.6)
    assert encoder_sparsity(model) == pytest.approx(0.6, abs=1e-3)
    assert torch.equal(model.classifier.weight, classifier_before)      # head untouched
    assert not any(hasattr(m, "weight_orig") for m in encoder_linears(model))  # plain weights again


def test_prune_model_keeps_sparsity_through_fine_tuning_and_reports(tiny_model_dir, tmp_path):
    cfg = compress_cfg(tiny_model_dir, tmp_path / "pruned", "prune_sparsity=0.5", "prune_epochs=1")
    tokenized = toy_tokenized(tiny_model_dir, cfg)
    report = prune_model(cfg, tiny_model_dir, tokenized, tmp_path / "pruned")
    assert report["encoder_sparsity"] == pytest.approx(0.5, abs=1e-3)
    best = Path(report["model_dir"])
    reloaded = load_model(cfg, str(best))
    assert encoder_sparsity(reloaded) == pytest.approx(0.5, abs=1e-3)     # zeros survived the fine-tune
    for side in ("baseline", "compressed"):
        assert {"accuracy", "macro_f1", "file_bytes", "gzip_bytes", "reviews_per_s"} <= set(report[side])
    assert report["compressed"]["nonzero_parameters"] < report["baseline"]["nonzero_parameters"]
    assert report["compressed"]["gzip_bytes"] < report["baseline"]["gzip_bytes"]
    assert json.loads((best / COMPRESSION_FILE).read_text())["method"] == "pruning"


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


def test_kd_loss_is_zero_when_student_matches_teacher_and_alpha_is_one():
    logits = torch.tensor([[1.0, -1.0], [0.2, 0.3]])
    labels = torch.tensor([0, 1])
    assert kd_loss(logits, logits, labels, 2.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    ce = torch.nn.functional.cross_entropy(logits, labels).item()
    assert kd_loss(logits, logits, labels, 2.0, 0.0).item() == pytest.approx(ce, rel=1e-6)


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
