"""Export a Hugging Face sequence classifier to ONNX (fp32), optimise it for onnxruntime and
check it against PyTorch. Nothing is written unless the parity check passes."""
from __future__ import annotations

import inspect
import os
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from review_classifier.shared.atomic import atomic_path
from review_classifier.shared.bundle import ORT_DISABLED_OPTIMIZERS
from review_classifier.shared.errors import ClassifierError, first_line
from review_classifier.shared.logits import pad_ids
from review_classifier.shared.text import TextPolicy
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.data.text import encode_texts

OPSET = 17
# Used when the caller has no review texts at hand: short and long, so padding is exercised.
FALLBACK_TEXTS = [
    "A wonderful film, the acting was superb and the story moved me.",
    "Terrible. I walked out after twenty minutes.",
    "It was fine, I guess; nothing special but not bad either. " * 6,
    "Great",
]


class ExportError(ClassifierError):
    """An exported or quantized model failed its check against the reference model."""

    exit_code = 4


def model_input_names(model, tokenizer) -> list[str]:
    """The inputs both the tokenizer produces and the model's forward accepts, in forward order.

    DistilBERT, for example, has no token_type_ids, so its graph must not declare one.
    """
    params = list(inspect.signature(model.forward).parameters)
    wanted = set(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
    wanted |= {"input_ids", "attention_mask"}
    return [p for p in params if p in wanted]


def encode_batch(texts: Sequence[str], tokenizer, policy: TextPolicy, input_names: Sequence[str],
                 pad_id: int) -> dict[str, np.ndarray]:
    """Texts -> int64 arrays for exactly `input_names`, padded to the longest text."""
    ids = encode_texts(list(texts), tokenizer, policy)
    return pad_ids(ids, input_names, pad_id)


def batches(ids: list[list[int]], size: int) -> list[list[int]]:
    """Index batches grouped by length (less padding, faster), in a fixed order."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    return [order[i:i + size] for i in range(0, len(order), size)]


def ort_session(path: str | os.PathLike, threads: int = 0):
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=ORT_DISABLED_OPTIMIZERS)


def onnx_logits(session, ids: list[list[int]], pad_id: int, batch_size: int = 32) -> np.ndarray:
    """Run an ORT session on token ids, feeding only the inputs its graph declares."""
    names = [i.name for i in session.get_inputs()]
    parts: dict[int, np.ndarray] = {}
    for idx in batches(ids, batch_size):
        logits = session.run(None, pad_ids([ids[i] for i in idx], names, pad_id))[0]
        for i, row in zip(idx, logits):
            parts[i] = row
    return np.stack([parts[i] for i in range(len(ids))])


def torch_logits(model, ids: list[list[int]], input_names: Sequence[str], pad_id: int,
                 batch_size: int = 32) -> np.ndarray:
    import torch  # lazy: torch (1.2 s) only to export; quantizing or checking an ONNX file needs none

    parts: dict[int, np.ndarray] = {}
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        for idx in batches(ids, batch_size):
            feeds = pad_ids([ids[i] for i in idx], input_names, pad_id)
            logits = model(**{k: torch.from_numpy(v).to(device) for k, v in feeds.items()}).logits
            for i, row in zip(idx, logits.float().cpu().numpy()):
                parts[i] = row
    return np.stack([parts[i] for i in range(len(ids))])


def load_tokenizer_only(folder: str | os.PathLike):
    """The folder's fast tokenizer (the edge runtime needs its tokenizer.json)."""
    from transformers import AutoTokenizer  # lazy: transformers (2.4 s) only where a checkpoint is read

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), use_fast=True)
    except (OSError, ValueError) as e:
        raise ClassifierError(f"cannot load a tokenizer from {folder}: {first_line(e)}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ClassifierError(f"{folder}: the tokenizer has no fast (tokenizer.json) version; "
                              "the edge runtime needs one")
    return tokenizer


def load_for_export(model_dir: str | os.PathLike):
    """Model (eager attention: the ORT optimizer fuses Attention only then) and fast tokenizer."""
    from transformers import AutoModelForSequenceClassification  # lazy: as above

    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), attn_implementation="eager")
    except (OSError, ValueError) as e:
        raise ClassifierError(f"cannot load a sequence classifier from {model_dir}: {first_line(e)} "
                              "(give a folder written by save_pretrained, with its tokenizer)") from None
    model.eval()
    return model, load_tokenizer_only(model_dir)


def pad_token_id(tokenizer) -> int:
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)


def optimize_onnx(raw_path: Path, out_path: Path, model_config) -> dict:
    """onnxruntime's transformer optimizer (model_type bert): fuses attention, layer norms, GELU."""
    from onnxruntime.transformers.fusion_options import FusionOptions  # lazy: the graph optimizer, for export only
    from onnxruntime.transformers.optimizer import optimize_model  # lazy: as above

    # EmbedLayerNormalization fusion adds int32 Casts of the inputs that INC's quantizer drops
    # (the graph then fails to load); the embedding lookup is cheap, so leave it unfused.
    # SkipLayerNormalization is 5x slower on CPU than the Add + LayerNormalization it replaces
    # (see shared.bundle.ORT_DISABLED_OPTIMIZERS): leave residual adds unfused too.
    options = FusionOptions("bert")
    options.enable_embed_layer_norm = False
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    heads = getattr(model_config, "num_attention_heads", None) or getattr(model_config, "n_heads", 0)
    hidden = getattr(model_config, "hidden_size", None) or getattr(model_config, "dim", 0)
    opt = optimize_model(str(raw_path), model_type="bert", num_heads=int(heads), hidden_size=int(hidden),
                         opt_level=0, use_gpu=False, optimization_options=options)
    opt.save_model_to_file(str(out_path))
    return {k: v for k, v in opt.get_fused_operator_statistics().items() if v}


def export_onnx(model_dir: str | os.PathLike, out_path: str | os.PathLike, cfg: TrainConfig,
                sample_texts: Sequence[str]) -> dict:
    """fp32 ONNX with dynamic batch and sequence axes, ORT-optimised, parity-checked.

    Raises ExportError (and writes nothing) if max |logit diff| against PyTorch on up to
    cfg.verify_samples of `sample_texts` exceeds cfg.parity_atol.
    """
    import torch  # lazy: as above

    started = time.perf_counter()
    model, tokenizer = load_for_export(model_dir)
    names = model_input_names(model, tokenizer)
    pad_id = pad_token_id(tokenizer)
    texts = list(sample_texts)[:cfg.verify_samples] or list(FALLBACK_TEXTS)
    ids = encode_texts(texts, tokenizer, cfg.text_policy)
    dummy = pad_ids(ids[:2] if len(ids) >= 2 else ids * 2, names, pad_id)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    with atomic_path(out_path) as tmp:
        raw = tmp.with_name("raw.onnx")
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's notices
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(model, (), str(raw), kwargs={k: torch.from_numpy(v) for k, v in dummy.items()},
                              input_names=names, output_names=["logits"], dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
        fused = optimize_onnx(raw, tmp, model.config)
        raw.unlink()
        session = ort_session(tmp)
        declared = [i.name for i in session.get_inputs()]
        diff = float(np.abs(onnx_logits(session, ids, pad_id) - torch_logits(model, ids, names, pad_id)).max())
        if not diff <= cfg.parity_atol:
            raise ExportError(
                f"fp32 ONNX export of {model_dir} failed its parity check: max |logit diff| {diff:.3g} "
                f"> parity_atol {cfg.parity_atol:g} on {len(ids)} texts; nothing was written "
                "(raise parity_atol with --set parity_atol=... only if you trust the export)")
    return {
        "path": str(out_path), "input_names": declared, "opset": OPSET, "fused_operators": fused,
        "parity": {"max_abs_logit_diff": diff, "atol": cfg.parity_atol, "samples": len(ids)},
        "size_bytes": Path(out_path).stat().st_size, "seconds": round(time.perf_counter() - started, 2),
    }
