"""Pruning with plain PyTorch (onnx-neural-compressor cannot prune a PyTorch model): global L1
unstructured pruning of the encoder's Linear weights, then fine-tuning through training.fit.loop
with the zeros held, reported against the unpruned model (training.compress.measure)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.nn.utils import prune

from review_classifier.training.compress.measure import fine_tune_cfg, model_stats, write_report
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.data.splits import load_splits
from review_classifier.training.data.tokenized import tokenize_splits
from review_classifier.training.fit.evaluation import evaluate_split
from review_classifier.training.fit.loop import fit
from review_classifier.training.fit.model import encoder_layers, load_model, load_tokenizer


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
    result = fit(fine_tune_cfg(cfg, cfg.prune_epochs, out_dir), model, tokenized, out_dir, tokenizer=tokenizer)
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
    write_report(result.best_dir, report)
    return report


def prune_checkpoint(cfg: TrainConfig, model_dir, out_dir) -> dict:
    """prune_model on the config's splits, tokenized for the checkpoint's tokenizer."""
    tokenized = tokenize_splits(load_splits(cfg), load_tokenizer(cfg, str(model_dir)), cfg)
    return prune_model(cfg, model_dir, tokenized, out_dir)
