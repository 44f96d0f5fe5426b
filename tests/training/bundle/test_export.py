"""fp32 ONNX export: dynamic axes, only declared inputs, ORT fusions, a parity check that bites."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from review_classifier.training.bundle.export import (
    ExportError,
    encode_batch,
    export_onnx,
    load_for_export,
    model_input_names,
    ort_session,
    torch_logits,
)
from review_classifier.training.config.settings import load_config
from review_classifier.training.data.text import encode_texts
from tests.conftest import build_tiny_model

TEXTS = ["Loved it.", "An utterly boring film with a plot that goes nowhere at all, and then some more words.",
         "Fine.", "The cast was great and the ending moved me to tears; highly recommended to everyone."]


def cfg_for(model_dir: Path, *extra: str):
    return load_config("tiny", [f"model={model_dir}", "max_length=48", *extra])


@pytest.fixture(scope="session")
def distilbert_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-distilbert") / "model", distilbert=True)


def test_bert_export_matches_pytorch_with_dynamic_batch_and_length(tiny_model_dir, tmp_path):
    cfg = cfg_for(tiny_model_dir)
    out = tmp_path / "model.onnx"
    info = export_onnx(tiny_model_dir, out, cfg, TEXTS)
    assert info["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert info["parity"]["max_abs_logit_diff"] <= cfg.parity_atol and info["parity"]["samples"] == 4
    assert info["fused_operators"].get("Attention") == 2          # eager export lets ORT fuse attention
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert "SkipLayerNormalization" not in ops                    # slow on CPU: residual adds stay unfused
    assert ops.count("LayerNormalization") == 5                   # embeddings + 2 per layer
    session = ort_session(out)
    model, tok = load_for_export(tiny_model_dir)
    names = model_input_names(model, tok)
    for batch in (TEXTS[:1], TEXTS[:3], TEXTS * 3):                # batch 1, 3, 12; different lengths
        feeds = encode_batch(batch, tok, cfg.text_policy, names, 0)
        got = session.run(None, feeds)[0]
        ref = torch_logits(model, encode_texts(batch, tok, cfg.text_policy), names, 0)
        assert got.shape == (len(batch), 2)
        assert np.abs(got - ref).max() <= cfg.parity_atol


def test_distilbert_exports_without_token_type_ids(distilbert_dir, tmp_path):
    cfg = cfg_for(distilbert_dir)
    out = tmp_path / "model.onnx"
    info = export_onnx(distilbert_dir, out, cfg, TEXTS)
    assert info["input_names"] == ["input_ids", "attention_mask"]
    session = ort_session(out)
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    _, tok = load_for_export(distilbert_dir)
    feeds = encode_batch(TEXTS, tok, cfg.text_policy, ["input_ids", "attention_mask"], 0)
    assert session.run(None, feeds)[0].shape == (4, 2)


def test_failed_parity_raises_with_the_numbers_and_writes_nothing(tiny_model_dir, tmp_path):
    cfg = cfg_for(tiny_model_dir, "parity_atol=1e-12")
    out = tmp_path / "sub" / "model.onnx"
    with pytest.raises(ExportError, match=r"max \|logit diff\| .* > parity_atol 1e-12"):
        export_onnx(tiny_model_dir, out, cfg, TEXTS)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_a_folder_without_a_model_is_a_user_error(tmp_path):
    from review_classifier.shared.errors import ClassifierError

    with pytest.raises(ClassifierError, match="cannot load a sequence classifier"):
        export_onnx(tmp_path, tmp_path / "m.onnx", cfg_for(tmp_path), TEXTS)
