"""What training minimises and how: the class-weighted loss, the optimizer, the LR schedule."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from review_classifier.training.config.settings import TrainConfig


def class_weighted_loss(labels: list[int], num_labels: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Binary: BCE on the logit margin with pos_weight = negatives / positives (as the
    original project did); multi-class: cross-entropy with inverse-frequency class weights."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_labels).astype(np.float64)
    if num_labels == 2:
        pos_weight = torch.tensor(counts[0] / max(counts[1], 1.0), dtype=torch.float32)

        def binary(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            margin = (logits[:, 1] - logits[:, 0]).float()
            return torch.nn.functional.binary_cross_entropy_with_logits(
                margin, y.float(), pos_weight=pos_weight.to(margin.device))
        return binary
    weights = torch.tensor(counts.sum() / (num_labels * np.maximum(counts, 1.0)), dtype=torch.float32)

    def multiclass(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits.float(), y, weight=weights.to(logits.device))
    return multiclass


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """All parameters (frozen ones get no gradient until unfrozen); no decay on bias/LayerNorm."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "nadam":
        return torch.optim.NAdam(groups, lr=cfg.lr, decoupled_weight_decay=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def make_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """`linear`: warm-up then linear decay, stepped per optimizer step.
    `step`: StepLR (as the original), stepped once per epoch."""
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    from transformers import get_linear_schedule_with_warmup  # lazy: transformers (2.4 s) for the linear schedule only

    total = max(1, steps_per_epoch * cfg.epochs)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    return get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            temperature: float, alpha: float,
            hard_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * hard loss on the labels
    (cross-entropy unless `hard_loss`, e.g. class_weighted_loss, is given)."""
    t = temperature
    soft = torch.nn.functional.kl_div(torch.nn.functional.log_softmax(student_logits.float() / t, -1),
                                      torch.nn.functional.softmax(teacher_logits.float() / t, -1),
                                      reduction="batchmean") * t * t
    hard = (hard_loss or (lambda s, y: torch.nn.functional.cross_entropy(s.float(), y.long())))(student_logits, labels)
    return alpha * soft + (1 - alpha) * hard
