"""Accuracy-aware INT8 post-training quantization of the fp32 ONNX classifier with Intel
Neural Compressor's ONNX side (onnx-neural-compressor `autotune`).

Candidates are tried from fastest to most conservative until one passes both checks on the
validation texts: accuracy within cfg.quant_tolerance (relative) of fp32, and the same label as
fp32 on at least cfg.int8_agreement of the texts. Accuracy alone can hide flips that cancel out
(on IMDB a static candidate within 1% accuracy still disagreed with fp32 on 5% of reviews), so a
candidate that fails agreement counts as a failed trial and tuning goes on. If none passes,
QuantizationError reports every trial.

Non-VNNI CPUs: every candidate uses U8S8 with `reduce_range=True` (7-bit weights). Without
VNNI, onnxruntime's U8S8 kernels use VPMADDUBSW, whose int16 intermediate sums saturate with
full 8-bit weights and give wrong BERT outputs (onnxruntime issues 5849, 6004). A bundle is
built once and shipped to unknown CPUs, so reduce_range is always on, not only when the build
machine lacks VNNI; the accuracy cost is measured by the tuning loop like any other.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

from review_classifier.shared.atomic import atomic_path
from review_classifier.shared.logits import pad_ids
from review_classifier.training.bundle.export import (
    ExportError,
    load_tokenizer_only,
    onnx_logits,
    ort_session,
    pad_token_id,
)
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.data.splits import calib_and_valid
from review_classifier.training.data.text import encode_texts

CALIB_BATCH = 8
REDUCE_RANGE = True
# Models are scored one review per run wherever a figure or a check depends on it: dynamic INT8
# scales activations per run, so a batch would make a review's score depend on its neighbours,
# and edge-classify scores dynamic bundles that way too (edge/model.py).
PER_REVIEW = 1


class QuantizationError(ExportError):
    """No INT8 candidate stayed within the accuracy tolerance, or the result failed its check;
    `report` holds every trial."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report or {}


class CalibrationReader:
    """INC CalibrationDataReader over pre-encoded batches (feeds only the graph's inputs)."""

    def __init__(self, ids: list[list[int]], input_names: Sequence[str], pad_id: int):
        self.feeds = [pad_ids(ids[i:i + CALIB_BATCH], input_names, pad_id)
                      for i in range(0, len(ids), CALIB_BATCH)]
        self.pos = 0

    def get_next(self) -> dict | None:
        if self.pos >= len(self.feeds):
            return None
        self.pos += 1
        return self.feeds[self.pos - 1]

    def rewind(self) -> None:
        self.pos = 0

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def vnni_available() -> bool:
    # lazy: Neural Compressor takes 4.5 s to import; only quantizing needs it
    from onnx_neural_compressor import utility

    try:
        return bool(utility.CpuInfo().vnni)
    except Exception:  # noqa: BLE001 - cpu probing is best effort, only reported
        return False


def candidate_configs(approach: str, calib_batches: int) -> list[tuple[str, object]]:
    """(description, INC config) from fastest to most conservative."""
    from onnx_neural_compressor.quantization import config as qc  # lazy: as above

    cpu = "CPUExecutionProvider"
    if approach == "dynamic":
        all_ops = ["MatMul", "Attention", "Gather", "EmbedLayerNormalization"]
        no_emb = ["MatMul", "Attention"]
        plans = [
            ("dynamic all ops", dict(op_types_to_quantize=all_ops)),
            ("dynamic all ops per-channel", dict(op_types_to_quantize=all_ops, per_channel=True)),
            ("dynamic fp32 embeddings", dict(op_types_to_quantize=no_emb, per_channel=True)),
            ("dynamic MatMul only", dict(op_types_to_quantize=["MatMul"], per_channel=True)),
            ("dynamic MatMul only, fp32 classifier", dict(op_types_to_quantize=["MatMul"], per_channel=True,
                                                          quant_last_matmul=False)),
        ]
        return [(d, qc.DynamicQuantConfig(weight_type=QuantType.QInt8, reduce_range=REDUCE_RANGE,
                                          execution_provider=cpu, **kw)) for d, kw in plans]
    default_ops = list(qc.constants.STATIC_QOPERATOR_CPU_OP_LIST)
    no_addmul = [o for o in default_ops if o not in ("Add", "Mul")]
    no_emb = [o for o in no_addmul if o not in ("Gather", "GatherElements", "GatherND", "EmbedLayerNormalization")]
    no_attn = [o for o in no_emb if o != "Attention"]
    plans = [
        ("static QOperator all ops", dict(op_types_to_quantize=default_ops)),
        ("static QOperator all ops per-channel", dict(op_types_to_quantize=default_ops, per_channel=True)),
        ("static QOperator no Add/Mul per-channel", dict(op_types_to_quantize=no_addmul, per_channel=True)),
        ("static QOperator fp32 embeddings", dict(op_types_to_quantize=no_emb, per_channel=True)),
        ("static QOperator fp32 attention+embeddings", dict(op_types_to_quantize=no_attn, per_channel=True)),
        ("static QOperator fp32 attention+embeddings+classifier",
         dict(op_types_to_quantize=no_attn, per_channel=True, quant_last_matmul=False)),
        ("static QDQ fp32 embeddings, percentile", dict(
            op_types_to_quantize=["MatMul", "Attention"], per_channel=True, quant_format=QuantFormat.QDQ,
            calibrate_method=CalibrationMethod.Percentile)),
    ]
    out = []
    for desc, kw in plans:
        kw.setdefault("quant_format", QuantFormat.QOperator)
        out.append((desc, qc.StaticQuantConfig(
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=REDUCE_RANGE,
            execution_provider=cpu, calibration_sampling_size=max(1, calib_batches), **kw)))
    return out


def _dedupe(cands: list[tuple[str, object]], model_path: Path) -> list[tuple[str, object]]:
    """Drop candidates that quantize exactly the same nodes as an earlier one (INC would skip them)."""
    seen, kept = [], []
    for desc, c in cands:
        mapping = c.to_config_mapping(model_info=type(c).get_model_info(model=str(model_path)))
        if any(mapping == m for m in seen):
            continue
        seen.append(dict(mapping))
        kept.append((desc, c))
    return kept


@contextlib.contextmanager
def _pass_reduce_range(reduce_range: bool):
    """onnx-neural-compressor 1.0 accepts `reduce_range` in its configs but its algorithm entries
    build StaticQuantizer/DynamicQuantizer without it (and DynamicQuantizer would not keep it), so
    weights came out full 8-bit ([-127, 127], measured) whatever the config said. Set it on both
    quantizers while tuning runs."""
    from onnx_neural_compressor.algorithms.post_training_quant import quantizer  # lazy: as above

    originals = quantizer.StaticQuantizer, quantizer.DynamicQuantizer

    def with_range(cls):
        class Quantizer(cls):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.reduce_range = reduce_range
        Quantizer.__name__ = cls.__name__
        return Quantizer

    quantizer.StaticQuantizer, quantizer.DynamicQuantizer = (with_range(c) for c in originals)
    try:
        yield
    finally:
        quantizer.StaticQuantizer, quantizer.DynamicQuantizer = originals


def int8_weight_range(model) -> tuple[int, int]:
    """(min, max) over the model's int8 initializers: within [-64, 64] when reduce_range held."""
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    if not arrays:
        return 0, 0
    return min(int(a.min()) for a in arrays), max(int(a.max()) for a in arrays)


@contextlib.contextmanager
def _quiet_workdir():
    """INC may write scratch files into the working directory and logs at INFO: contain both."""
    loggers = [logging.getLogger(n) for n in ("onnx_neural_compressor", "onnxruntime")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="rc-quant-") as tmp, contextlib.chdir(tmp):
        try:
            yield Path(tmp)
        finally:
            for lg, lv in zip(loggers, levels):
                lg.setLevel(lv)


def onnx_size_bytes(model_path: str | Path) -> int:
    """An ONNX model's bytes with its external data: INC saves each trial's model as a graph
    file plus a weights file beside it, so the graph file alone is a few kB."""
    path = Path(model_path)
    model = onnx.load(str(path), load_external_data=False)
    external = {entry.value for tensor in model.graph.initializer
                if tensor.data_location == onnx.TensorProto.EXTERNAL
                for entry in tensor.external_data if entry.key == "location"}
    return path.stat().st_size + sum((path.parent / name).stat().st_size for name in external)


@dataclass
class QuantizationData:
    """The texts INT8 quantization works on: calibration texts (static approach) and labelled
    validation texts (the accuracy every trial is held to)."""
    calib_texts: Sequence[str]
    valid_texts: Sequence[str]
    valid_labels: Sequence[int]

    @classmethod
    def of(cls, calib, valid) -> "QuantizationData":
        """From calibration and validation reviews (training.data.reviews.Reviews)."""
        return cls(calib.texts, valid.texts, valid.labels)


class _TrialJudge:
    """INC's eval_fn: each candidate's validation accuracy, or 0.0 (a failed trial for INC) when
    its labels disagree with fp32 too often, its graph breaks, or it is over cfg.max_model_mb.
    INC's first call scores the fp32 model itself: its predictions are the reference. Keeps every
    trial's accuracy, agreement and error for the report."""

    def __init__(self, cfg: TrainConfig, valid_ids: list[list[int]], labels: np.ndarray, pad_id: int,
                 names: list[str], log=None):
        self.cfg, self.valid_ids, self.labels, self.pad_id, self.log = cfg, valid_ids, labels, pad_id, log
        self.names = names   # the candidates' descriptions, in INC's order, for the log
        self.results: list[float] = []
        self.agreements: list[float] = []
        self.errors: dict[int, str] = {}
        self.fp32_pred: np.ndarray | None = None

    def _failed(self, why: str) -> float:
        self.errors[len(self.results)] = why
        self.results.append(0.0)
        self.agreements.append(0.0)
        return 0.0

    def score(self, model_path: str) -> float:
        size_mb = onnx_size_bytes(model_path) / 1e6 if self.results and Path(model_path).is_file() else 0.0
        if self.cfg.max_model_mb and size_mb > self.cfg.max_model_mb:
            why = f"{size_mb:.1f} MB is over max_model_mb={self.cfg.max_model_mb:g}"
            if self.log:
                self.log(f"  trial {len(self.results)} ({self.names[len(self.results) - 1]}): {why}")
            return self._failed(why)
        try:
            pred = onnx_logits(ort_session(model_path), self.valid_ids, self.pad_id, batch_size=PER_REVIEW).argmax(-1)
        except Exception as e:  # noqa: BLE001 - a candidate that yields a broken graph is a failed trial
            if not self.results:
                raise
            return self._failed(str(e).strip().splitlines()[0][:200])
        acc = float((pred == self.labels).mean())
        if self.fp32_pred is None:
            self.fp32_pred = pred
            self.results.append(acc)
            self.agreements.append(1.0)
            return acc
        agree = float((pred == self.fp32_pred).mean())
        self.results.append(acc)
        self.agreements.append(agree)
        if self.log:
            n = len(self.results) - 1
            self.log(f"  trial {n} ({self.names[n - 1]}): accuracy {acc:.4f} (fp32 {self.results[0]:.4f}), "
                     f"agreement with fp32 {agree:.2%}")
        return acc if agree >= self.cfg.int8_agreement else 0.0

    def trials(self, cands: list[tuple[str, object]]) -> list[dict]:
        """One row per candidate INC tried, in order."""
        baseline = self.baseline
        rows = []
        for i, ((desc, c), acc, agree) in enumerate(zip(cands, self.results[1:], self.agreements[1:]), start=1):
            loss = (baseline - acc) / baseline if baseline else 0.0
            rows.append({"error": self.errors.get(i, ""), "config": desc, "accuracy": acc,
                         "relative_loss": round(loss, 6), "agreement": agree,
                         "within_tolerance": loss <= self.cfg.quant_tolerance,
                         "agrees": agree >= self.cfg.int8_agreement,
                         "per_channel": bool(getattr(c, "per_channel", False)),
                         "quant_format": getattr(getattr(c, "quant_format", None), "name", "dynamic")})
        return rows

    @property
    def baseline(self) -> float:
        return self.results[0] if self.results else float("nan")


def quantize_onnx(fp32_path: str | os.PathLike, out_path: str | os.PathLike, cfg: TrainConfig,
                  data: QuantizationData, tokenizer, *, max_trials: int | None = None, log=None) -> dict:
    """INT8 model at `out_path` whose validation accuracy is within cfg.quant_tolerance of fp32.

    Approach (static, calibrated on cfg.calib_samples of the calibration texts; or dynamic) from
    cfg.quant_approach. Returns a report with every trial; raises QuantizationError otherwise.
    """
    from onnx_neural_compressor.quantization import tuning  # lazy: as above

    started = time.perf_counter()
    fp32_path, out_path = Path(fp32_path).resolve(), Path(out_path)
    if not data.valid_texts:
        raise QuantizationError("quantization needs labelled validation texts to check accuracy; got none")
    pad_id = pad_token_id(tokenizer)
    input_names = [i.name for i in ort_session(fp32_path).get_inputs()]
    valid_ids = encode_texts(list(data.valid_texts), tokenizer, cfg.text_policy)
    calib = list(data.calib_texts)[:cfg.calib_samples] if cfg.quant_approach == "static" else []
    calib_ids = encode_texts(calib, tokenizer, cfg.text_policy) if calib else []
    if cfg.quant_approach == "static" and not calib_ids:
        raise QuantizationError("static quantization needs calibration texts; got none "
                                "(or use --set quant_approach=dynamic)")

    reader = CalibrationReader(calib_ids, input_names, pad_id) if cfg.quant_approach == "static" else None
    cands = _dedupe(candidate_configs(cfg.quant_approach, len(reader.feeds) if reader else 0), fp32_path)
    if max_trials:
        cands = cands[:max_trials]
    judge = _TrialJudge(cfg, valid_ids, np.asarray(list(data.valid_labels), dtype=np.int64), pad_id,
                        [desc for desc, _ in cands], log)
    tune = tuning.TuningConfig(config_set=[c for _, c in cands], tolerable_loss=cfg.quant_tolerance,
                               max_trials=len(cands))
    q_model = None
    with _quiet_workdir(), _pass_reduce_range(REDUCE_RANGE):
        try:
            q_model = tuning.autotune(str(fp32_path), tune, eval_fn=judge.score, calibration_data_reader=reader)
        except SystemExit:  # autotune calls exit(0) when no candidate meets the goal
            q_model = None
    trials = judge.trials(cands)
    report = {
        "approach": cfg.quant_approach, "tool": "onnx-neural-compressor autotune",
        "weight_type": "int8", "activation_type": "uint8", "reduce_range": REDUCE_RANGE,
        "build_cpu_has_vnni": vnni_available(),
        "tolerance": cfg.quant_tolerance, "min_agreement": cfg.int8_agreement,
        "fp32_accuracy": judge.baseline, "valid_samples": len(valid_ids),
        "calib_samples": len(calib_ids) if reader else 0, "trials": trials,
    }
    if q_model is None or not trials or not (trials[-1]["within_tolerance"] and trials[-1]["agrees"]):
        raise _no_candidate(cfg, judge.baseline, len(valid_ids), trials, report)
    low, high = int8_weight_range(q_model)
    if REDUCE_RANGE and not (-64 <= low and high <= 64):
        raise QuantizationError(f"int8 weights span [{low}, {high}] although reduce_range (7-bit weights) was "
                                "asked for: the model would give wrong outputs on CPUs without VNNI", report)
    report["int8_weight_range"] = [low, high]
    with atomic_path(out_path) as tmp:
        onnx.save_model(q_model, str(tmp))
    chosen = trials[-1]
    report.update({"chosen": chosen["config"], "int8_accuracy": chosen["accuracy"], "agreement": chosen["agreement"],
                   "relative_loss": chosen["relative_loss"], "path": str(out_path),
                   "size_bytes": out_path.stat().st_size, "seconds": round(time.perf_counter() - started, 2)})
    return report


def _no_candidate(cfg: TrainConfig, baseline: float, n_valid: int, trials: list[dict], report: dict) -> QuantizationError:
    """The error when no candidate passed, with every trial's outcome and what to try next."""
    tried = "; ".join(f"{t['config']}: " + (f"failed ({t['error']})" if t["error"] else
                      f"acc {t['accuracy']:.4f} (loss {t['relative_loss']:.2%}, agrees {t['agreement']:.2%})")
                      for t in trials)
    return QuantizationError(
        f"INT8 quantization ({cfg.quant_approach}) found no configuration within "
        f"{cfg.quant_tolerance:.2%} relative accuracy loss of fp32 ({baseline:.4f}) that agrees with fp32 "
        f"on >= {cfg.int8_agreement:.2%} of {n_valid} validation texts; "
        f"tried {len(trials)}: {tried or 'none'}. "
        "Try --set quant_approach=dynamic|static, more calib_samples, a larger quant_tolerance, "
        "or ship the fp32 bundle", report)


def quantize_file(fp32_model: str | os.PathLike, tokenizer_dir: str | os.PathLike, out_path: str | os.PathLike,
                  cfg: TrainConfig, data: str = "") -> dict:
    """quantize_onnx of an fp32 ONNX file, calibrated and checked on `data` split in two halves,
    else on the config's data (training.data.splits.calib_and_valid)."""
    calib, valid, _ = calib_and_valid(cfg, data)
    return quantize_onnx(fp32_model, out_path, cfg, QuantizationData.of(calib, valid), load_tokenizer_only(tokenizer_dir))
