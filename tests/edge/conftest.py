"""Tiny random BERT bundles for the edge tests, built once per session.

A stand-in for the real exporter (training.bundle.build): export with the legacy ONNX
exporter, seal with shared.bundle, special tokens from training.data.text.special_ids.

Without torch (the slim installs on the oldest and newest Python, .ci/pythons.sh) the bundles
come prebuilt: `python -m tests.edge.build_bundles DIR` in the main venv, then
EDGE_TEST_BUNDLES=DIR. There the fixtures carry no torch model or tokenizer: a test that uses
one is skipped (a test that needs torch itself says so with pytest.importorskip).
"""
from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path

import pytest

from tests.conftest import minilm_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
EDGE_CLASSIFY = Path(sys.executable).with_name("edge-classify")
TINY_POLICY = {"max_length": 48, "truncation": "head+tail", "head_fraction": 0.25}
PREBUILT = "EDGE_TEST_BUNDLES"            # a folder of bundles from build_bundles, used instead of torch
BINARY, THREE = ["negative", "positive"], ["negative", "neutral", "positive"]
NO_TYPES, WITH_TYPES = ["input_ids", "attention_mask"], ["input_ids", "attention_mask", "token_type_ids"]
# folder name -> export_bundle arguments, for the session fixtures below and build_bundles
BUNDLES = {
    "binary": dict(labels=BINARY, input_names=NO_TYPES),
    "per-review": dict(labels=BINARY, input_names=NO_TYPES, quant_approach="dynamic"),
    "sharp-batched": dict(labels=THREE, input_names=NO_TYPES, seed=2, logit_scale=300.0),
    "sharp-per_review": dict(labels=THREE, input_names=NO_TYPES, seed=2, quant_approach="dynamic",
                             logit_scale=300.0),
    "three": dict(labels=THREE, input_names=WITH_TYPES, seed=1),
}


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
    from review_classifier.training.data.text import special_ids

    minilm = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(minilm)
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
    shutil.copy(minilm / "tokenizer.json", folder / "tokenizer.json")
    prefix, suffix = special_ids(tokenizer)
    text_policy = TextPolicy.from_dict(policy or TINY_POLICY)
    manifest = Manifest(labels=labels, text_policy=text_policy.to_dict(), prefix_ids=prefix,
                        suffix_ids=suffix, pad_id=tokenizer.pad_token_id, input_names=input_names,
                        precision="fp32", base_model="tiny-random-bert",
                        compression={"quantization": {"approach": quant_approach}} if quant_approach else {})
    seal_bundle(folder, manifest)
    return model, tokenizer


def build_bundles(root: Path) -> None:
    """Write every bundle in BUNDLES under root (for EDGE_TEST_BUNDLES on a Python without torch)."""
    for name, kwargs in BUNDLES.items():
        export_bundle(root / name, **kwargs)


class NotBuiltHere:
    """The torch model or tokenizer of a prebuilt bundle: a test that touches it is skipped."""

    def __init__(self, what: str, bundle: str):
        self._reason = (f"needs the {what} behind bundle {bundle!r}, built with torch; here the bundles "
                        f"come prebuilt from ${PREBUILT}")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        pytest.skip(self._reason)

    def __call__(self, *args, **kwargs):
        pytest.skip(self._reason)


def make_bundle(tmp_path_factory, name: str) -> tuple:
    """(bundle folder, torch model, transformers tokenizer) for BUNDLES[name]: exported here, or
    copied from $EDGE_TEST_BUNDLES (then the model and tokenizer are NotBuiltHere)."""
    folder = tmp_path_factory.mktemp("bundles") / name
    prebuilt = os.environ.get(PREBUILT)
    if not prebuilt:
        return (folder, *export_bundle(folder, **BUNDLES[name]))
    source = Path(prebuilt) / name
    if not (source / "manifest.json").is_file():
        pytest.fail(f"{PREBUILT}={prebuilt} has no bundle {name!r}: build them with "
                    f"`python -m tests.edge.build_bundles {prebuilt}` (needs torch)", pytrace=False)
    shutil.copytree(source, folder)   # a private copy: the folder is shared by the Pythons of a stage
    return folder, NotBuiltHere("torch model", name), NotBuiltHere("transformers tokenizer", name)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(bundle folder, torch model, transformers tokenizer): 2 labels, no token_type_ids (like DistilBERT)."""
    return make_bundle(tmp_path_factory, "binary")


@pytest.fixture(scope="session")
def tiny_per_review(tmp_path_factory):
    """Like `tiny`, but scored one review per run, several concurrently (as dynamic INT8 bundles are)."""
    return make_bundle(tmp_path_factory, "per-review")


@pytest.fixture(scope="session")
def sharp(tmp_path_factory):
    """{"batched": ..., "per_review": ...}: the same 3-label model with its logits scaled up (texts
    get clearly different probabilities), as a batched and as a one-review-per-run bundle."""
    return {mode: make_bundle(tmp_path_factory, f"sharp-{mode}") for mode in ("batched", "per_review")}


@pytest.fixture(scope="session")
def tiny3(tmp_path_factory):
    """A 3-label bundle whose graph also declares token_type_ids."""
    return make_bundle(tmp_path_factory, "three")


@pytest.fixture
def bundle_copy(tiny, tmp_path):
    """A private copy of the binary bundle, for tests that damage it."""
    dst = tmp_path / "bundle"
    shutil.copytree(tiny[0], dst)
    return dst
