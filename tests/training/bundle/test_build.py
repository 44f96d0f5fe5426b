"""Bundles from a (briefly trained) tiny classifier: built, verified, refused when damaged."""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from review_classifier.shared.bundle import load_bundle
from review_classifier.shared.errors import BundleError
from review_classifier.training.bundle.build import BundleInputs, build_bundles
from review_classifier.training.bundle.evaluate import evaluate_bundle
from review_classifier.training.bundle.export import ExportError
from review_classifier.training.config.settings import load_config
from tests.conftest import build_tiny_model
from tests.training.conftest import NAMES, toy_reviews


def bundle_cfg(model_dir: Path, *extra: str):
    return load_config("tiny", [f"model={model_dir}", "max_length=48", "calib_samples=32", "verify_samples=64",
                                "quant_approach=dynamic", *extra])


@pytest.fixture(scope="session")
def bundles(trained_tiny, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bundles") / "out"
    cfg = bundle_cfg(trained_tiny)
    return build_bundles(BundleInputs(trained_tiny, cfg, valid=toy_reviews(96, 3, "valid"),
                                      calib=toy_reviews(32, 4, "calib"), data_fingerprint="abc123"), out, archive=True)


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
        assert sorted(p.name for p in folder.iterdir()) == ["README.md", "manifest.json", "model.onnx", "tokenizer.json"]
        assert "README.md" in manifest.files                      # the card is covered by the checksums
        card = (folder / "README.md").read_text()
        assert card.startswith("---\nlicense: ") and "## Intended use" in card and "## Limitations" in card
        assert f"{cfg.max_length} tokens (head+tail" in card and manifest.training["max_length"] == cfg.max_length
        assert "Test set: not measured for this bundle yet" in card
        assert_calibration(manifest, folder, cfg)
    int8, _ = load_bundle(bundles["int8"])
    quant = int8.compression["quantization"]
    assert quant["reduce_range"] is True and quant["trials"]
    assert quant["relative_loss"] <= cfg.quant_tolerance
    assert int8.compression["int8_agreement"] >= cfg.int8_agreement
    assert int8.metrics["int8"]["accuracy"] >= int8.metrics["fp32_onnx"]["accuracy"] * (1 - cfg.quant_tolerance)
    assert (bundles["int8"] / "model.onnx").stat().st_size < 0.5 * (bundles["fp32"] / "model.onnx").stat().st_size
    leftovers = [p.name for p in bundles["int8"].parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def assert_calibration(manifest, folder, cfg):
    """The stored temperature is the validation fit where the raw ECE exceeded the limit, 1.0
    otherwise, and the edge runtime's probabilities are softmax(logits / T) of the bundle's model."""
    from review_classifier.edge.model import EdgeClassifier
    from review_classifier.shared.logits import softmax
    from review_classifier.training.bundle.export import onnx_logits, ort_session

    cal = manifest.calibration
    assert cal["n"] == 96 and cal["fitted_on"] == "validation split"
    if cal["ece_before"] > cal["ece_limit"] and cal["ece_after_fit"] < cal["ece_before"]:
        assert cal["temperature"] == cal["fitted_temperature"] != 1.0
    else:
        assert cal["temperature"] == 1.0
    texts = toy_reviews(16, 9, "probe").texts
    clf = EdgeClassifier(folder, threads=1)
    logits = onnx_logits(ort_session(folder / "model.onnx"), [x[0] for x in clf.encode(texts)], manifest.pad_id, batch_size=1)
    expect = softmax(logits.astype(np.float64) / cal["temperature"])
    assert np.abs(clf.predict_proba(texts) - expect).max() < 1e-4


def test_update_card_records_test_metrics_and_speed_and_reseals(bundles, tmp_path):
    from review_classifier.training.bundle.model_card import update_card

    folder = tmp_path / "b"
    shutil.copytree(bundles["int8"], folder)
    report = {"accuracy": 0.9261, "macro_f1": 0.926, "n": 25000, "ece": 0.012, "ece_uncalibrated": 0.041,
              "provenance": {"command": "edge-classify --eval test.csv", "machine": {"cpu": "EPYC", "cpus": 2, "isa": ["avx2", "fma"]}}}
    speed = {"provenance": {"command": "python -m benchmarks.bench_edge", "threads": 2,
                            "machine": {"cpu": "EPYC", "cpu_class": "AVX2", "isa": ["avx2", "fma"]}},
             "runs": {"edge_int8": {"reviews_per_s": 47.5}}, "int8_speedup_vs_torch": 2.6}
    (tmp_path / "eval.json").write_text(json.dumps(report))
    (tmp_path / "speed.json").write_text(json.dumps(speed))
    m = update_card(folder, tmp_path / "eval.json", tmp_path / "speed.json")
    again, _ = load_bundle(folder)                                # still verifies: re-sealed
    assert again.metrics["test_edge"]["accuracy"] == 0.9261 and again.metrics["speed"][0]["reviews_per_s"] == 47.5
    card = (folder / "README.md").read_text()
    assert "accuracy 0.9261, macro F1 0.9260, expected calibration error 0.0120 (without the temperature: 0.0410)" in card
    assert "| EPYC (AVX2) | avx2, fma | 47.5 | 2.60x | 2 |" in card and "value: 0.9261" in card
    assert m.files["README.md"] == again.files["README.md"]


def test_archive_loads_like_the_folder(bundles, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    manifest, folder = load_bundle(bundles["int8_archive"])
    assert manifest.precision == "int8"
    with tarfile.open(bundles["int8_archive"]) as tar:
        assert sorted(tar.getnames()) == ["README.md", "manifest.json", "model.onnx", "tokenizer.json"]


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


@pytest.mark.parametrize("setting, message", [("int8_agreement=1.01", "agrees with fp32"),
                                              ("max_model_mb=0.001", "over max_model_mb=0.001"),
                                              # over the graph file (tens of kB), under graph + weights
                                              # (INC keeps each trial's weights in a file beside it)
                                              ("max_model_mb=0.5", "over max_model_mb=0.5")])
def test_failed_int8_still_writes_and_verifies_the_fp32_bundle(trained_tiny, tmp_path, setting, message):
    out = tmp_path / "out"
    cfg = bundle_cfg(trained_tiny, setting)
    with pytest.raises(ExportError, match="the fp32 bundle was written and verified") as info:
        build_bundles(BundleInputs(trained_tiny, cfg, valid=toy_reviews(48, 3, "valid"), calib=toy_reviews(16, 4, "c")),
                      out, max_trials=1)
    assert sorted(p.name for p in out.iterdir()) == ["fp32", "int8_report.json"]
    manifest, _ = load_bundle(out / "fp32")                     # sealed and verified
    assert manifest.precision == "fp32"
    report = json.loads((out / "int8_report.json").read_text())
    assert report["trials"] and report["error"] in str(info.value)
    assert message in json.dumps(report["trials"]) or message in report["error"]


def test_failed_fp32_parity_raises_and_leaves_nothing(trained_tiny, tmp_path):
    out = tmp_path / "out"
    cfg = bundle_cfg(trained_tiny, "parity_atol=1e-12")
    with pytest.raises(ExportError, match="parity") as info:
        build_bundles(BundleInputs(trained_tiny, cfg, valid=toy_reviews(48, 3, "valid"), calib=toy_reviews(16, 4, "c")), out)
    assert "max |logit diff|" in str(info.value)
    assert list(out.iterdir()) == []


def test_distilbert_int8_bundle_declares_and_gets_only_its_inputs(tmp_path):
    model_dir = build_tiny_model(tmp_path / "distilbert", distilbert=True)
    cfg = bundle_cfg(model_dir)
    lines: list[str] = []
    built = build_bundles(BundleInputs(model_dir, cfg, valid=toy_reviews(48, 5, "valid"), calib=toy_reviews(16, 6, "calib")),
                          tmp_path / "out", precisions=("int8",), log=lines.append)
    assert set(built) == {"int8"}
    # progress, one line a stage and a tuning trial
    assert lines[0].startswith("export: fp32 ONNX") and any(x.startswith("  trial 1 (dynamic all ops)") for x in lines)
    assert lines[-1] == "export: sealing and checking int8 bundle(s) with the edge runtime"
    manifest, _ = load_bundle(built["int8"])
    assert manifest.input_names == ["input_ids", "attention_mask"]
    report = evaluate_bundle(built["int8"], toy_reviews(16, 8, "eval"))
    assert report["n"] == 16


def test_mpnet_bundles_export_quantize_and_pass_the_parity_checks(tmp_path):
    """MPNet (the accurate tier's architecture): relative attention bias, no token_type_ids.
    build_bundles raises when fp32 ONNX parity or INT8 agreement fails, so building is the check."""
    model_dir = build_tiny_model(tmp_path / "mpnet", mpnet=True, seed=2)
    cfg = bundle_cfg(model_dir, "windows=2")
    built = build_bundles(BundleInputs(model_dir, cfg, valid=toy_reviews(48, 5, "valid"), calib=toy_reviews(16, 6, "calib")),
                          tmp_path / "out", precisions=("fp32", "int8"))
    for precision in ("fp32", "int8"):
        manifest, _ = load_bundle(built[precision])
        assert manifest.input_names == ["input_ids", "attention_mask"]
        assert manifest.text_policy["windows"] == 2
    fp32, _ = load_bundle(built["fp32"])
    parity = fp32.compression["export"]["parity"]
    assert parity["max_abs_logit_diff"] <= cfg.parity_atol and parity["samples"] > 0
    assert fp32.compression["edge_max_prob_diff"] < 1e-4   # the edge pools 2 windows as training does
    report = evaluate_bundle(built["int8"], toy_reviews(16, 8, "eval"))
    assert report["n"] == 16


def test_a_dynamic_int8_bundle_scores_each_review_on_its_own(bundles):
    """Dynamic INT8 scales activations per run: the edge runtime scores such bundles one review per
    run, so a review's probabilities do not depend on which reviews share its file."""
    from review_classifier.edge.model import EdgeClassifier

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
    from review_classifier.edge.model import EdgeClassifier

    texts = toy_reviews(40, 12, "conc").texts
    one = EdgeClassifier(bundles["int8"], threads=1)
    two = EdgeClassifier(bundles["int8"], threads=2)
    assert one._pool is None and two._pool is not None and two._pool._max_workers == 2
    expected = np.stack([one.predict_proba([t])[0] for t in texts])
    assert np.array_equal(two.predict_proba(texts), expected)
    assert np.array_equal(two.predict_proba(texts[::-1]), expected[::-1])
    # batched (fp32) bundles keep onnxruntime's own threads
    assert EdgeClassifier(bundles["fp32"], threads=2)._pool is None


def test_a_windows_bundle_keeps_the_setting_and_the_edge_matches_the_training_path(trained_tiny, tmp_path):
    """windows=3 at export: the manifest says so, and check_edge_parity (which fails the export
    beyond 1e-4) pools the same windows the edge runtime reads."""
    from review_classifier.edge.model import EdgeClassifier
    from review_classifier.training.data.reviews import Reviews

    cfg = bundle_cfg(trained_tiny, "windows=3", "window_overlap=8")
    short = toy_reviews(40, 5, "valid")
    long = Reviews([" ".join([t] * 12) for t in short.texts[:24]], short.labels[:24], "long", short.names)
    valid = Reviews(long.texts + short.texts, long.labels + short.labels, "valid", short.names)
    out = build_bundles(BundleInputs(trained_tiny, cfg, valid=valid, calib=toy_reviews(16, 4, "calib")), tmp_path / "b",
                        precisions=("fp32",))
    manifest, folder = load_bundle(out["fp32"])
    assert manifest.text_policy["windows"] == 3 and manifest.text_policy["window_overlap"] == 8
    assert manifest.compression["edge_max_prob_diff"] <= 1e-4
    clf = EdgeClassifier(folder, threads=1)
    counts = {len(x) for x in clf.encode(long.texts)}
    assert clf.policy.windows == 3 and counts <= {2, 3} and 3 in counts
    assert manifest.metrics["fp32"]["accuracy"] > 0.8
