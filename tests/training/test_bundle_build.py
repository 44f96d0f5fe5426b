"""Bundles from a (briefly trained) tiny classifier: built, verified, refused when damaged."""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from shared.bundle import load_bundle
from shared.errors import BundleError
from tests.conftest import build_tiny_model
from tests.training.conftest import NAMES, toy_reviews
from training.bundle_build import build_bundles
from training.config import load_config
from training.evaluate_bundle import evaluate_bundle
from training.export import ExportError

def bundle_cfg(model_dir: Path, *extra: str):
    return load_config("tiny", [f"model={model_dir}", "max_length=48", "calib_samples=32", "verify_samples=64",
                                "quant_approach=dynamic", *extra])


@pytest.fixture(scope="session")
def bundles(trained_tiny, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bundles") / "out"
    cfg = bundle_cfg(trained_tiny)
    return build_bundles(trained_tiny, out, cfg, valid=toy_reviews(96, 3, "valid"),
                         calib=toy_reviews(32, 4, "calib"), data_fingerprint="abc123", archive=True)


def test_int8_and_fp32_bundles_are_built_verified_and_described(bundles, trained_tiny):
    assert {"int8", "fp32", "int8_archive", "fp32_archive"} <= set(bundles)
    cfg = bundle_cfg(trained_tiny)
    for precision in ("int8", "fp32"):
        manifest, folder = load_bundle(bundles[precision])
        assert manifest.precision == precision
        assert manifest.labels == list(NAMES)
        assert manifest.input_names == ["input_ids", "attention_mask", "token_type_ids"]
        assert manifest.prefix_ids == [101] and manifest.suffix_ids == [102] and manifest.pad_id == 0
        assert manifest.text_policy == cfg.text_policy.to_dict()
        assert manifest.config_hash == cfg.config_hash() and manifest.data_fingerprint == "abc123"
        assert manifest.metrics["fp32"]["accuracy"] > 0.8
        assert manifest.compression["export"]["parity"]["max_abs_logit_diff"] <= cfg.parity_atol
        assert manifest.compression["edge_max_prob_diff"] <= 1e-4
        assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.onnx", "tokenizer.json"]
    int8, _ = load_bundle(bundles["int8"])
    quant = int8.compression["quantization"]
    assert quant["reduce_range"] is True and quant["trials"]
    assert quant["relative_loss"] <= cfg.quant_tolerance
    assert int8.compression["int8_agreement"] >= cfg.int8_agreement
    assert int8.metrics["int8"]["accuracy"] >= int8.metrics["fp32_onnx"]["accuracy"] * (1 - cfg.quant_tolerance)
    assert (bundles["int8"] / "model.onnx").stat().st_size < 0.5 * (bundles["fp32"] / "model.onnx").stat().st_size
    leftovers = [p.name for p in bundles["int8"].parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_archive_loads_like_the_folder(bundles, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    manifest, folder = load_bundle(bundles["int8_archive"])
    assert manifest.precision == "int8"
    with tarfile.open(bundles["int8_archive"]) as tar:
        assert sorted(tar.getnames()) == ["manifest.json", "model.onnx", "tokenizer.json"]


def test_evaluate_bundle_reports_accuracy_f1_and_confusion(bundles):
    reviews = toy_reviews(64, 7, "eval.csv")
    report = evaluate_bundle(bundles["int8"], reviews)
    assert report["n"] == 64 and report["accuracy"] > 0.8 and report["macro_f1"] > 0.8
    assert np.asarray(report["confusion_matrix"]).sum() == 64
    assert report["precision"] == "int8" and report["reviews_per_s"] > 0


def test_tampered_truncated_and_incompatible_bundles_are_refused(bundles, tmp_path):
    tampered = shutil.copytree(bundles["int8"], tmp_path / "tampered")
    data = bytearray((tampered / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tampered / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="tampered"):
        load_bundle(tampered)

    truncated = shutil.copytree(bundles["int8"], tmp_path / "truncated")
    (truncated / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(truncated)

    newer = shutil.copytree(bundles["int8"], tmp_path / "newer")
    manifest = json.loads((newer / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (newer / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="newer"):
        load_bundle(newer)

    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(bundles["int8_archive"].read_bytes()[:2000])
    with pytest.raises(BundleError):
        load_bundle(cut)


def test_failed_int8_agreement_raises_and_leaves_nothing(trained_tiny, tmp_path):
    out = tmp_path / "out"
    cfg = bundle_cfg(trained_tiny, "int8_agreement=1.01")
    with pytest.raises(ExportError, match="agrees with fp32"):
        build_bundles(trained_tiny, out, cfg, valid=toy_reviews(48, 3, "valid"), calib=toy_reviews(16, 4, "c"),
                      max_trials=1)
    assert list(out.iterdir()) == []


def test_failed_fp32_parity_raises_and_leaves_nothing(trained_tiny, tmp_path):
    out = tmp_path / "out"
    cfg = bundle_cfg(trained_tiny, "parity_atol=1e-12")
    with pytest.raises(ExportError, match="parity") as info:
        build_bundles(trained_tiny, out, cfg, valid=toy_reviews(48, 3, "valid"), calib=toy_reviews(16, 4, "c"))
    assert "max |logit diff|" in str(info.value)
    assert list(out.iterdir()) == []


def test_distilbert_int8_bundle_declares_and_gets_only_its_inputs(tmp_path):
    model_dir = build_tiny_model(tmp_path / "distilbert", distilbert=True)
    cfg = bundle_cfg(model_dir)
    lines: list[str] = []
    built = build_bundles(model_dir, tmp_path / "out", cfg, valid=toy_reviews(48, 5, "valid"),
                          calib=toy_reviews(16, 6, "calib"), precisions=("int8",), log=lines.append)
    assert set(built) == {"int8"}
    # progress, one line a stage and a tuning trial
    assert lines[0].startswith("export: fp32 ONNX") and any(x.startswith("  trial 1 (dynamic all ops)") for x in lines)
    assert lines[-1] == "export: sealing and checking int8 bundle(s) with the edge runtime"
    manifest, _ = load_bundle(built["int8"])
    assert manifest.input_names == ["input_ids", "attention_mask"]
    report = evaluate_bundle(built["int8"], toy_reviews(16, 8, "eval"))
    assert report["n"] == 16


def test_a_dynamic_int8_bundle_scores_each_review_on_its_own(bundles):
    """Dynamic INT8 scales activations per run: the edge runtime scores such bundles one review per
    run, so a review's probabilities do not depend on which reviews share its file."""
    from edge.model import EdgeClassifier

    int8 = EdgeClassifier(bundles["int8"], batch_size=32)
    assert int8.manifest.quant_approach == "dynamic" and int8.per_review and int8.batch_size == 1
    texts = toy_reviews(24, 11, "mix").texts
    together = int8.predict_proba(texts)
    alone = np.stack([int8.predict_proba([t])[0] for t in texts])
    assert np.array_equal(together, alone)
    fp32 = EdgeClassifier(bundles["fp32"], batch_size=32)
    assert fp32.manifest.quant_approach is None and not fp32.per_review and fp32.batch_size == 32


def test_per_review_bundles_run_reviews_concurrently_with_the_same_scores_in_order(bundles):
    """With several threads, a dynamic INT8 bundle scores that many reviews at once (one thread each)
    instead of splitting one small review across threads: same probabilities, same order."""
    from edge.model import EdgeClassifier

    texts = toy_reviews(40, 12, "conc").texts
    one = EdgeClassifier(bundles["int8"], threads=1)
    two = EdgeClassifier(bundles["int8"], threads=2)
    assert one._pool is None and two._pool is not None and two._pool._max_workers == 2
    expected = np.stack([one.predict_proba([t])[0] for t in texts])
    assert np.array_equal(two.predict_proba(texts), expected)
    assert np.array_equal(two.predict_proba(texts[::-1]), expected[::-1])
    # batched (fp32) bundles keep onnxruntime's own threads
    assert EdgeClassifier(bundles["fp32"], threads=2)._pool is None
