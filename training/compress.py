"""Pruning and knowledge distillation with plain PyTorch (onnx-neural-compressor cannot do either).

Both fine-tune through training.loop.fit and report accuracy, size and speed against the
uncompressed model; both write compression.json next to the resulting model so that
training.bundle_build records it in the bundle manifest.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.errors import ClassifierError
from review_classifier.training.config import TrainConfig
from review_classifier.training.evaluation import evaluate_split
from review_classifier.training.loop import fit
from review_classifier.training.model import encoder_layers, load_model, load_tokenizer

COMPRESSION_FILE = "compression.json"
SPEED_SAMPLES = 256


def encoder_linears(model) -> list[torch.nn.Linear]:
    """The Linear layers inside the transformer blocks (not embeddings, pooler or classifier)."""
    return [m for layer in encoder_layers(model) for m in layer.modules() if isinstance(m, torch.nn.Linear)]


def encoder_sparsity(model) -> float:
    weights = [m.weight for m in encoder_linears(model)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / max(1, sum(w.numel() for w in weights))


def prune_encoder(model, sparsity: float) -> list[torch.Tensor]:
    """Global L1 unstructured pruning of the encoder's Linear weights; zeros made permanent.

    Returns the keep-masks, so fine-tuning can hold the pruned weights at zero.
    """
    from torch.nn.utils import prune

    linears = encoder_linears(model)
    prune.global_unstructured([(m, "weight") for m in linears], pruning_method=prune.L1Unstructured,
                              amount=float(sparsity))
    masks = []
    for m in linears:
        masks.append(m.weight_mask.detach().clone())
        prune.remove(m, "weight")
    return masks


def hold_at_zero(model, masks: list[torch.Tensor]) -> None:
    """Mask the gradients of pruned weights: with zero gradient AdamW (decoupled decay) never moves them."""
    for m, mask in zip(encoder_linears(model), masks):
        m.weight.register_hook(lambda g, mask=mask: g * mask.to(g.device, g.dtype))


def model_stats(model, model_dir: Path | None, cfg: TrainConfig, valid, pad_id: int) -> dict:
    """Validation accuracy/macro F1, parameter counts, file size and PyTorch reviews/s."""
    model.eval()
    device = next(model.parameters()).device
    metrics = evaluate_split(model, valid, cfg, device, pad_id, "valid")
    sample = valid.select(range(min(SPEED_SAMPLES, len(valid))))
    with torch.inference_mode():
        evaluate_split(model, sample, cfg, device, pad_id, "warm-up")
        t = time.perf_counter()
        evaluate_split(model, sample, cfg, device, pad_id, "speed")
        seconds = time.perf_counter() - t
    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    stats = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "parameters": params,
             "nonzero_parameters": nonzero, "reviews_per_s": round(len(sample) / max(seconds, 1e-9), 2)}
    if model_dir is not None:
        weights = sorted(Path(model_dir).glob("*.safetensors")) or sorted(Path(model_dir).glob("*.bin"))
        stats["file_bytes"] = sum(w.stat().st_size for w in weights)
        stats["gzip_bytes"] = sum(len(gzip.compress(w.read_bytes(), 6)) for w in weights)
    return stats


def _fine_tune_cfg(cfg: TrainConfig, epochs: int, out_dir: Path) -> TrainConfig:
    return dataclasses.replace(cfg, epochs=max(1, epochs), output_dir=str(out_dir), freeze_epochs=0)


def _write_report(best_dir: Path, report: dict) -> None:
    atomic_write_text(Path(best_dir) / COMPRESSION_FILE, json.dumps(report, indent=2, sort_keys=True) + "\n")


def prune_model(cfg: TrainConfig, model_dir, tokenized, out_dir) -> dict:
    """Prune the encoder to cfg.prune_sparsity, fine-tune cfg.prune_epochs; out_dir/best is the model."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    tokenizer = load_tokenizer(cfg, str(model_dir))
    pad_id = tokenizer.pad_token_id or 0
    model = load_model(cfg, str(model_dir))
    before = model_stats(model, model_dir, cfg, tokenized["valid"], pad_id)
    masks = prune_encoder(model, cfg.prune_sparsity)
    after_prune = evaluate_split(model, tokenized["valid"], cfg, next(model.parameters()).device, pad_id, "valid")
    hold_at_zero(model, masks)
    result = fit(_fine_tune_cfg(cfg, cfg.prune_epochs, out_dir), model, tokenized, out_dir, tokenizer=tokenizer)
    pruned = load_model(cfg, str(result.best_dir))
    sparsity = encoder_sparsity(pruned)
    after = model_stats(pruned, result.best_dir, cfg, tokenized["valid"], pad_id)
    report = {
        "method": "pruning", "tool": "torch.nn.utils.prune global L1 unstructured (encoder Linear weights)",
        "target_sparsity": cfg.prune_sparsity, "encoder_sparsity": round(sparsity, 4),
        "fine_tune_epochs": cfg.prune_epochs, "source_model": str(model_dir), "model_dir": str(result.best_dir),
        "baseline": before, "compressed": after,
        "accuracy_right_after_pruning": after_prune["accuracy"], "history": result.history,
        "note": "unstructured zeros keep dense shapes: file size and dense speed do not change; "
                "gzip_bytes shows how much smaller the weights pack",
    }
    _write_report(result.best_dir, report)
    return report


def student_from_teacher(teacher, layers: int):
    """Same architecture with only the teacher's first `layers` blocks, initialised from it."""
    from transformers import AutoModelForSequenceClassification

    n_teacher = len(encoder_layers(teacher))
    if not 1 <= layers < n_teacher:
        raise ClassifierError(f"distill_layers must be between 1 and {n_teacher - 1} for this "
                              f"{n_teacher}-layer teacher, got {layers}")
    config = teacher.config.to_dict()
    key = "n_layers" if "n_layers" in config else "num_hidden_layers"
    student_cfg = type(teacher.config).from_dict({**config, key: layers})
    student = AutoModelForSequenceClassification.from_config(student_cfg)
    missing, _ = student.load_state_dict(teacher.state_dict(), strict=False)
    if missing:
        raise ClassifierError(f"cannot initialise the student from the teacher: missing {missing[:3]}")
    return student


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            temperature: float, alpha: float) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy(labels)."""
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits.float() / t, -1), F.softmax(teacher_logits.float() / t, -1),
                    reduction="batchmean") * t * t
    hard = F.cross_entropy(student_logits.float(), labels.long())
    return alpha * soft + (1 - alpha) * hard


def distill_model(cfg: TrainConfig, teacher_dir, tokenized, out_dir) -> dict:
    """Train a cfg.distill_layers-layer student on the teacher's logits; out_dir/best is the student."""
    teacher_dir, out_dir = Path(teacher_dir), Path(out_dir)
    tokenizer = load_tokenizer(cfg, str(teacher_dir))
    pad_id = tokenizer.pad_token_id or 0
    teacher = load_model(cfg, str(teacher_dir)).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    before = model_stats(teacher, teacher_dir, cfg, tokenized["valid"], pad_id)
    student = student_from_teacher(teacher, cfg.distill_layers)

    def compute_loss(model, batch: dict) -> torch.Tensor:
        labels = batch.pop("labels")
        device = batch["input_ids"].device
        if next(teacher.parameters()).device != device:
            teacher.to(device)
        with torch.no_grad():
            teacher_logits = teacher(**batch).logits
        return kd_loss(model(**batch).logits, teacher_logits, labels, cfg.distill_temperature, cfg.distill_alpha)

    result = fit(_fine_tune_cfg(cfg, cfg.distill_epochs, out_dir), student, tokenized, out_dir,
                 tokenizer=tokenizer, compute_loss=compute_loss)
    teacher.to("cpu")
    best = load_model(cfg, str(result.best_dir))
    after = model_stats(best, result.best_dir, cfg, tokenized["valid"], pad_id)
    report = {
        "method": "distillation", "tool": "PyTorch KD loss (temperature-scaled KL + cross-entropy)",
        "teacher_layers": len(encoder_layers(teacher)), "student_layers": len(encoder_layers(best)),
        "temperature": cfg.distill_temperature, "alpha": cfg.distill_alpha, "epochs": cfg.distill_epochs,
        "teacher_model": str(teacher_dir), "model_dir": str(result.best_dir),
        "baseline": before, "compressed": after, "history": result.history,
        "speedup": round(after["reviews_per_s"] / max(before["reviews_per_s"], 1e-9), 2),
        "size_ratio": round(after["parameters"] / max(before["parameters"], 1), 3),
    }
    _write_report(result.best_dir, report)
    return report
