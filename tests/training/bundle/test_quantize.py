"""INC accuracy-aware INT8 quantization: both approaches, reduce_range, a failure that reports its trials."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnx
import pytest

from review_classifier.training.bundle.export import export_onnx, load_for_export, onnx_logits, ort_session
from review_classifier.training.bundle.quantize import (
    QuantizationData,
    QuantizationError,
    int8_weight_range,
    quantize_onnx,
)
from review_classifier.training.config.settings import load_config
from review_classifier.training.data.text import encode_texts
from tests.conftest import toy_review


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [toy_review(i % 2, rng) for i in range(n)]


@pytest.fixture(scope="module")
def fp32_model(trained_tiny, tmp_path_factory) -> Path:
    """A trained model: an untrained one puts every text within a hair of the decision boundary,
    where the 7-bit weight rounding flips them all."""
    out = tmp_path_factory.mktemp("fp32") / "model.onnx"
    export_onnx(trained_tiny, out, load_config("tiny", ["max_length=48"]), texts(8, 0))
    return out


def own_labels(fp32_model: Path, tok, cfg, valid: list[str]) -> list[int]:
    """The fp32 model's own predictions: fp32 accuracy is 1.0, int8 accuracy = agreement."""
    ids = encode_texts(valid, tok, cfg.text_policy)
    return onnx_logits(ort_session(fp32_model), ids, 0).argmax(-1).tolist()


@pytest.mark.parametrize("approach,quant_op", [("dynamic", "MatMulInteger"), ("static", "QLinearMatMul")])
def test_quantize_meets_the_tolerance_and_runs_in_onnxruntime(approach, quant_op, fp32_model, tiny_model_dir,
                                                              tmp_path):
    cfg = load_config("tiny", ["max_length=48", f"quant_approach={approach}", "calib_samples=16"])
    _, tok = load_for_export(tiny_model_dir)
    valid = texts(64, 1)
    out = tmp_path / "int8.onnx"
    report = quantize_onnx(fp32_model, out, cfg, QuantizationData(texts(32, 2), valid, own_labels(fp32_model, tok, cfg, valid)),
                           tok, max_trials=2)
    assert report["approach"] == approach and report["reduce_range"] is True
    assert report["fp32_accuracy"] == 1.0
    assert report["relative_loss"] <= cfg.quant_tolerance and report["trials"][-1]["within_tolerance"]
    assert report["calib_samples"] == (16 if approach == "static" else 0)
    model = onnx.load(str(out))
    assert quant_op in {n.op_type for n in model.graph.node}
    # 7-bit weights really reached the file (onnx-neural-compressor 1.0 alone drops reduce_range)
    low, high = int8_weight_range(model)
    assert -64 <= low < -32 and 32 < high <= 64 and report["int8_weight_range"] == [low, high]
    assert out.stat().st_size < 0.5 * fp32_model.stat().st_size
    ids = encode_texts(valid, tok, cfg.text_policy)
    assert onnx_logits(ort_session(out), ids, 0).shape == (64, 2)


@pytest.fixture(scope="module")
def coin_flip_model(tiny_model_dir, tmp_path_factory) -> Path:
    """fp32 ONNX of the tiny model with its decision threshold moved to the median of the
    validation texts' logit gaps: half of them become near-ties that int8 rounding flips."""
    import torch

    from review_classifier.training.bundle.export import torch_logits

    folder = tmp_path_factory.mktemp("coin") / "model"
    model, tok = load_for_export(tiny_model_dir)
    cfg = load_config("tiny", ["max_length=48"])
    logits = torch_logits(model, encode_texts(texts(64, 3), tok, cfg.text_policy),
                          ["input_ids", "attention_mask", "token_type_ids"], 0)
    with torch.no_grad():
        model.classifier.bias[1] -= float(np.median(logits[:, 1] - logits[:, 0]))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    out = folder / "model.onnx"
    export_onnx(folder, out, load_config("tiny", ["max_length=48"]), texts(8, 0))
    return out


def test_no_candidate_within_tolerance_raises_with_every_trial(coin_flip_model, tiny_model_dir, tmp_path):
    cfg = load_config("tiny", ["max_length=48", "quant_approach=dynamic", "quant_tolerance=0"])
    _, tok = load_for_export(tiny_model_dir)
    valid = texts(64, 3)
    labels = own_labels(coin_flip_model, tok, cfg, valid)
    out = tmp_path / "int8.onnx"
    with pytest.raises(QuantizationError) as info:
        quantize_onnx(coin_flip_model, out, cfg, QuantizationData([], valid, labels), tok, max_trials=2)
    msg = str(info.value)
    assert "tried 2" in msg and "dynamic all ops" in msg and "within 0.00%" in msg and "(1.0000)" in msg
    assert not out.exists()


def test_static_without_calibration_texts_is_refused(fp32_model, tiny_model_dir, tmp_path):
    cfg = load_config("tiny", ["max_length=48", "quant_approach=static"])
    _, tok = load_for_export(tiny_model_dir)
    with pytest.raises(QuantizationError, match="calibration"):
        quantize_onnx(fp32_model, tmp_path / "q.onnx", cfg, QuantizationData([], ["a"], [0]), tok)


def test_a_candidate_within_tolerance_that_disagrees_with_fp32_is_rejected(fp32_model, tiny_model_dir, tmp_path):
    """Accuracy alone passes (tolerance 99%), label agreement cannot: every trial fails on agreement."""
    cfg = load_config("tiny", ["max_length=48", "quant_approach=dynamic", "quant_tolerance=0.99",
                               "int8_agreement=1.01"])
    _, tok = load_for_export(tiny_model_dir)
    valid = texts(32, 4)
    out = tmp_path / "int8.onnx"
    with pytest.raises(QuantizationError) as info:
        quantize_onnx(fp32_model, out, cfg, QuantizationData([], valid, own_labels(fp32_model, tok, cfg, valid)), tok,
                      max_trials=2)
    msg = str(info.value)
    assert "agrees with fp32 on >= 101.00%" in msg and "tried 2" in msg
    assert msg.count("agrees 100.00%") + msg.count("agrees 9") == 2   # each trial's agreement is reported
    assert not out.exists()

    cfg = load_config("tiny", ["max_length=48", "quant_approach=dynamic", "quant_tolerance=0.99",
                               "int8_agreement=0.5"])
    report = quantize_onnx(fp32_model, out, cfg, QuantizationData([], valid, own_labels(fp32_model, tok, cfg, valid)), tok,
                           max_trials=2)
    chosen = report["trials"][-1]
    assert chosen["agrees"] and chosen["agreement"] == report["agreement"] >= 0.5
    assert report["agreement"] == pytest.approx(report["int8_accuracy"])   # labels are fp32's own
