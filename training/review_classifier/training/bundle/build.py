"""Build verified model bundles (fp32 and int8) from a Hugging Face classifier folder.

Every bundle is assembled in a staging folder, sealed, re-opened through the edge runtime and
checked; only then does it replace out_dir/<precision>. A failed check raises ExportError and
leaves no bundle behind.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from review_classifier.edge.model import EdgeClassifier
from review_classifier.shared.atomic import atomic_path, atomic_write_text
from review_classifier.shared.bundle import Manifest, load_bundle, pack_bundle, seal_bundle
from review_classifier.shared.calibration import calibration_report
from review_classifier.shared.logits import softmax
from review_classifier.shared.metrics import classification_report
from review_classifier.shared.text import pool_windows
from review_classifier.training.bundle.export import (
    ExportError,
    export_onnx,
    load_for_export,
    onnx_logits,
    ort_session,
    pad_token_id,
)
from review_classifier.training.bundle.model_card import write_model_card
from review_classifier.training.bundle.quantize import PER_REVIEW, QuantizationData, QuantizationError, quantize_onnx
from review_classifier.training.config.settings import TrainConfig, run_folder_of
from review_classifier.training.data.text import encode_texts, encode_windows, special_ids
from review_classifier.training.fit.device import log_rank0

PRECISIONS = ("fp32", "int8")
COMPRESSION_FILE = "compression.json"   # written by training.compress next to a pruned/distilled model
INT8_REPORT = "int8_report.json"        # written beside the bundles when INT8 fails
EDGE_PROB_ATOL = 1e-4                   # bundle (edge tokenizer path) vs training path, same ONNX model


def bundle_labels(model_config, cfg: TrainConfig) -> list[str]:
    """Class names by id from the model's config; the recipe's labels if the model has generic ones."""
    id2label = {int(k): v for k, v in (getattr(model_config, "id2label", None) or {}).items()}
    names = [id2label[i] for i in sorted(id2label)]
    generic = all(n == f"LABEL_{i}" for i, n in enumerate(names))
    if (not names or generic) and len(cfg.labels) == len(names or cfg.labels):
        return list(cfg.labels)
    return names


def base_model_name(model_dir: Path) -> str:
    """What the model was fine-tuned from: the run's `model` when model_dir is a run's checkpoint
    (its own config.json names only the folder, `best`), else the checkpoint's _name_or_path."""
    run = run_folder_of(model_dir)
    names = [_json_field(run / "config.json", "model")] if run else []
    names.append(_json_field(model_dir / "config.json", "_name_or_path"))
    for name in names:
        if name and Path(name).name not in ("best", "last"):
            return name
    return model_dir.name


def _json_field(path: Path, key: str) -> str | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return str(value) if value else None


def onnx_report(model_path: Path, reviews, tokenizer, cfg: TrainConfig, labels: list[str]) -> tuple[dict, np.ndarray]:
    """(accuracy, macro F1 and confusion matrix, logits) of an ONNX model on labelled reviews."""
    ids = encode_texts(reviews.texts, tokenizer, cfg.text_policy)
    logits = onnx_logits(ort_session(model_path), ids, pad_token_id(tokenizer), batch_size=PER_REVIEW)
    return classification_report(list(reviews.labels), logits.argmax(-1).tolist(), labels), logits


def fit_calibration(logits: np.ndarray, reviews, log) -> dict:
    """Temperature scaling fitted on the validation logits (stored only where the raw ECE > 0.02)."""
    report = calibration_report(logits, np.asarray(reviews.labels))
    log(f"calibration: validation ECE {report['ece_before']:.4f} -> {report['ece_after_fit']:.4f} at "
        f"T={report['fitted_temperature']:.3f}; stored T={report['temperature']:.3f} (n={report['n']})")
    return {**report, "fitted_on": "validation split"}


def _short(report: dict) -> dict:
    return {k: report[k] for k in ("accuracy", "macro_f1", "n", "confusion_matrix") if k in report}


def check_edge_parity(bundle: Path, model_path: Path, texts: Sequence[str], tokenizer, cfg: TrainConfig) -> float:
    """The sealed bundle, opened by the edge runtime, must score like the training-side path."""
    if not texts:
        return 0.0
    clf = EdgeClassifier(bundle, threads=1)
    inputs = encode_windows(list(texts), tokenizer, cfg.text_policy)
    logits = onnx_logits(ort_session(model_path), [w for text in inputs for w in text], pad_token_id(tokenizer),
                         batch_size=PER_REVIEW)
    ref = softmax(pool_windows(logits, [len(text) for text in inputs]) / clf.temperature)
    got = clf.predict_proba(list(texts))
    diff = float(np.abs(got - ref).max())
    if not diff <= EDGE_PROB_ATOL:
        raise ExportError(f"bundle {bundle.name}: the edge runtime's probabilities differ from the training "
                          f"path by {diff:.3g} (> {EDGE_PROB_ATOL:g}); tokenizer.json and the manifest's "
                          "special tokens do not reproduce training's token ids")
    return diff


def label_agreement(a_path: Path, b_path: Path, texts: Sequence[str], tokenizer, cfg: TrainConfig) -> float:
    ids = encode_texts(list(texts), tokenizer, cfg.text_policy)
    pad = pad_token_id(tokenizer)
    a = onnx_logits(ort_session(a_path), ids, pad, batch_size=PER_REVIEW).argmax(-1)
    b = onnx_logits(ort_session(b_path), ids, pad, batch_size=PER_REVIEW).argmax(-1)
    return float((a == b).mean())


@dataclass
class BundleInputs:
    """What the bundles are built from: a Hugging Face classifier folder, its config, the
    validation reviews (accuracy tuning, parity, the manifest's metrics; training.data.reviews.Reviews)
    and the calibration reviews (static quantization), the fingerprint of the data they came
    from, and the run's PyTorch test metrics when there are any."""
    model_dir: Path
    cfg: TrainConfig
    valid: Any
    calib: Any
    data_fingerprint: str = ""
    fp32_metrics: dict | None = None


@dataclass
class BundleContents:
    """What one bundle's manifest records beside its model file."""
    labels: list[str]
    input_names: list[str]
    precision: str
    base_model: str
    data_fingerprint: str
    metrics: dict
    compression: dict
    calibration: dict = field(default_factory=dict)


def write_bundle(folder: Path, model_path: Path, tokenizer, cfg: TrainConfig, contents: BundleContents) -> Manifest:
    """Model, tokenizer.json and a sealed manifest in `folder` (which must not exist yet)."""
    folder.mkdir(parents=True)
    shutil.copyfile(model_path, folder / "model.onnx")
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    prefix, suffix = special_ids(tokenizer)
    c = contents
    manifest = Manifest(
        labels=c.labels, text_policy=cfg.text_policy.to_dict(), prefix_ids=prefix, suffix_ids=suffix,
        pad_id=pad_token_id(tokenizer), input_names=c.input_names, precision=c.precision, base_model=c.base_model,
        config_hash=cfg.config_hash(), data_fingerprint=c.data_fingerprint, metrics=c.metrics,
        compression=c.compression, calibration=c.calibration or {},
        data={"text_column": cfg.text_column, "label_column": cfg.label_column,
              "label_aliases": dict(cfg.label_map.aliases)})
    write_model_card(folder, manifest, cfg)
    return seal_bundle(folder, manifest)


def build_bundles(inputs: BundleInputs, out_dir: str | os.PathLike, *, archive: bool = False,
                  precisions: Sequence[str] = PRECISIONS, max_trials: int | None = None,
                  log=None) -> dict[str, Path]:
    """out_dir/fp32 and/or out_dir/int8 bundles, each parity-checked; with `archive`, also
    out_dir/<precision>.tar.gz."""
    model_dir, out_dir, cfg = Path(inputs.model_dir), Path(out_dir), inputs.cfg
    valid, calib, fp32_metrics = inputs.valid, inputs.calib, inputs.fp32_metrics
    log = log or log_rank0
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise ExportError(f"precision must be fp32, int8 or both; got {list(precisions)}")
    model, tokenizer = load_for_export(model_dir)
    labels = bundle_labels(model.config, cfg)
    base = base_model_name(model_dir)
    del model
    verify = list(valid.texts[:cfg.verify_samples])
    extra = {}
    if (model_dir / COMPRESSION_FILE).is_file():
        extra = json.loads((model_dir / COMPRESSION_FILE).read_text(encoding="utf-8"))
    built: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix=".stage-", dir=_ensure(out_dir)) as stage:
        stage = Path(stage)
        fp32_onnx = stage / "fp32.onnx"
        log(f"export: fp32 ONNX from {model_dir}, parity-checked on {len(verify)} texts")
        export = export_onnx(model_dir, fp32_onnx, cfg, verify)
        log(f"export: scoring the fp32 ONNX model on {len(valid.texts)} validation texts")
        fp32_report, fp32_logits = onnx_report(fp32_onnx, valid, tokenizer, cfg, labels)
        metrics = {"fp32": dict(fp32_metrics) if fp32_metrics else _short(fp32_report),
                   "fp32_onnx": _short(fp32_report)}
        contents = partial(BundleContents, labels=labels, input_names=export["input_names"], base_model=base,
                           data_fingerprint=inputs.data_fingerprint)
        staged: dict[str, Path] = {}
        int8_failed: QuantizationError | None = None
        if "int8" in precisions:
            int8_onnx = stage / "int8.onnx"
            log(f"export: INT8 ({cfg.quant_approach}) tuning on {len(valid.texts)} validation texts, one line a trial")
            try:
                quant = quantize_onnx(fp32_onnx, int8_onnx, cfg, QuantizationData.of(calib, valid), tokenizer,
                                      max_trials=max_trials, log=log)
                agreement = label_agreement(fp32_onnx, int8_onnx, verify, tokenizer, cfg)
                if not agreement >= cfg.int8_agreement:
                    raise QuantizationError(
                        f"int8 model agrees with fp32 on only {agreement:.2%} of {len(verify)} validation texts "
                        f"(< int8_agreement {cfg.int8_agreement:.2%}); no int8 bundle was written "
                        "(try --set quant_approach=dynamic)", quant)
            except QuantizationError as e:
                int8_failed = e
                log(f"export: INT8 failed, the fp32 bundle is built anyway: {e}")
        if "int8" in precisions and int8_failed is None:
            int8_report, int8_logits = onnx_report(int8_onnx, valid, tokenizer, cfg, labels)
            int8_metrics = dict(metrics, int8=_short(int8_report))
            folder = stage / "int8"
            write_bundle(folder, int8_onnx, tokenizer, cfg, contents(
                precision="int8", metrics=int8_metrics,
                compression={**extra, "quantization": quant, "int8_agreement": agreement, "export": export},
                calibration=fit_calibration(int8_logits, valid, log)))
            staged["int8"] = folder
        if "fp32" in precisions:
            folder = stage / "fp32"
            write_bundle(folder, fp32_onnx, tokenizer, cfg, contents(
                precision="fp32", metrics=metrics, compression={**extra, "export": export},
                calibration=fit_calibration(fp32_logits, valid, log)))
            staged["fp32"] = folder
        log(f"export: sealing and checking {', '.join(staged)} bundle(s) with the edge runtime")
        for folder in staged.values():
            manifest, _ = load_bundle(folder)
            manifest.compression["edge_max_prob_diff"] = check_edge_parity(
                folder, folder / "model.onnx", verify[:64], tokenizer, cfg)
            seal_bundle(folder, manifest)
        for precision, folder in staged.items():
            with atomic_path(out_dir / precision) as tmp:
                os.replace(folder, tmp)
            built[precision] = out_dir / precision
            if archive:
                built[f"{precision}_archive"] = pack_bundle(out_dir / precision, out_dir / f"{precision}.tar.gz")
    if int8_failed is not None:
        report = out_dir / INT8_REPORT
        atomic_write_text(report, json.dumps({"error": str(int8_failed), **int8_failed.report}, indent=2) + "\n")
        written = f"the fp32 bundle was written and verified at {built['fp32']}" if "fp32" in built else \
            "no fp32 bundle was asked for"
        raise QuantizationError(f"{int8_failed} -- {written}; INT8 trial report: {report}", int8_failed.report)
    return built


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
