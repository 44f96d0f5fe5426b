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

from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.errors import ClassifierError
from review_classifier.training.config import TrainConfig
from review_classifier.training.evaluation import evaluate_split
from review_classifier.training.loop import fit
from review_classifier.training.model import encoder_layers, load_model, load_tokenizer
from review_classifier.training.tokenized import tokenize_splits

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


def distill_model(cfg: TrainConfig, teacher, out_dir, student: str | None = None,
                  windows: int | None = None) -> dict:
    """Train a student on a teacher's logits; out_dir is its run folder, out_dir/best the student.

    `teacher`: a fine-tuned checkpoint folder or a model bundle of any architecture (its logits
    on the training split are computed once into out_dir/teacher_logits.npz), or such a .npz
    file itself. `student`: any model source (cfg.model's kinds), cut to cfg.distill_layers
    layers (0: all); none: the teacher checkpoint's first distill_layers (0: half) layers.
    Trains cfg.distill_epochs epochs through run_training, so the run is tested and resumable.
    """
    from review_classifier.training.run import run_training
    from review_classifier.training.splits import load_splits
    from review_classifier.training.teacher import is_bundle

    teacher, out_dir = Path(teacher), Path(out_dir)
    checkpoint = teacher.is_dir() and not is_bundle(teacher)
    if student is None and not checkpoint:
        raise ClassifierError(f"{teacher}: a bundle or a logits file teaches only a --student of your choice "
                              "(a model source: pkg:..., splitzip:..., a folder)")
    layers = cfg.distill_layers
    if student is None and not layers:
        layers = max(1, _layer_count(teacher) // 2)
    splits = load_splits(cfg)
    logits_file = teacher if teacher.suffix == ".npz" else ensure_teacher_logits(cfg, teacher, splits, out_dir, windows)
    scfg = dataclasses.replace(cfg, model=student or str(teacher), distill_layers=layers,
                               teacher_logits=str(logits_file), epochs=max(1, cfg.distill_epochs),
                               output_dir=str(out_dir), freeze_epochs=0)
    results = run_training(scfg)
    best_dir = Path(results["best_dir"])
    before = None
    if checkpoint:
        tokenizer = load_tokenizer(cfg, str(teacher))
        teacher_model = load_model(dataclasses.replace(cfg, distill_layers=0), str(teacher))
        valid = tokenize_splits(splits, tokenizer, cfg)["valid"]
        before = model_stats(teacher_model, teacher, cfg, valid, tokenizer.pad_token_id or 0)
    tokenizer = load_tokenizer(scfg, str(best_dir))
    best = load_model(scfg, str(best_dir))
    after = model_stats(best, best_dir, scfg, tokenize_splits(splits, tokenizer, scfg)["valid"],
                        tokenizer.pad_token_id or 0)
    report = {
        "method": "distillation", "tool": "PyTorch KD loss (temperature-scaled KL + class-weighted hard loss)",
        "teacher_layers": _layer_count(teacher) if checkpoint else None,
        "student_layers": len(encoder_layers(best)), "student_model": scfg.model,
        "temperature": cfg.distill_temperature, "alpha": cfg.distill_alpha, "epochs": scfg.epochs,
        "teacher_model": str(teacher), "teacher": results.get("teacher"), "model_dir": str(best_dir),
        "baseline": before, "compressed": after, "history": results["history"], "test": results["test"],
    }
    if before:
        report["speedup"] = round(after["reviews_per_s"] / max(before["reviews_per_s"], 1e-9), 2)
        report["size_ratio"] = round(after["parameters"] / max(before["parameters"], 1), 3)
    _write_report(best_dir, report)
    return report


def ensure_teacher_logits(cfg: TrainConfig, teacher: Path, splits, out_dir: Path, windows: int | None) -> Path:
    """out_dir/teacher_logits.npz for this teacher and training split: computed once, reused
    by a rerun (a resume) while teacher and data are the same."""
    from review_classifier.training.reviews import data_fingerprint
    from review_classifier.training.teacher import load_teacher_logits, teacher_hash, write_teacher_logits

    path = out_dir / "teacher_logits.npz"
    if path.is_file():
        prov = load_teacher_logits(path).provenance
        if prov["teacher"]["sha256"] == teacher_hash(teacher) \
                and prov["data"]["fingerprint"] == data_fingerprint({"train": splits["train"]}) \
                and (windows is None or prov["text_policy"].get("windows") == windows):
            return path
    write_teacher_logits(path, teacher, splits["train"], cfg, windows)
    return path


def _layer_count(checkpoint: Path) -> int:
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    return int(config.get("n_layers") or config["num_hidden_layers"])
