"""Dropout with a cheaper random mask, for training on the CPU.

torch's CPU dropout draws one Mersenne-Twister number per element (`bernoulli_`): on the
16 x 12 x 256 x 256 attention-probability tensor of a MiniLM batch that is ~115 ms a call,
about a quarter of a bf16 training step on this machine. This module draws 64 random bits
per call of the same generator (so `torch.manual_seed` still makes runs repeatable), reads
them as four 16-bit lanes and keeps an element when its lane clears a threshold: a
Bernoulli mask with the drop probability rounded to 1/65536 (0.1 -> 0.100006), rescaled by
the exact keep probability so that the expected output equals the input.
"""
from __future__ import annotations

import torch

_LANES = 65536  # 16-bit lanes: the drop probability's resolution


class _KeepMask(torch.autograd.Function):
    """x * keep * scale, saving only the boolean mask for the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x, 0).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, 0).mul_(ctx.scale), None, None


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A boolean mask (True = keep) with drop probability p rounded to 1/65536, and 1/P(keep)."""
    n = shape.numel()
    cut = round(p * _LANES)
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2**63, None)
    keep = bits.view(torch.int16)[:n] >= cut - _LANES // 2
    return keep.view(shape), _LANES / (_LANES - cut)


class FastDropout(torch.nn.Dropout):
    """nn.Dropout with the mask from `keep_mask`; identity in eval mode, like nn.Dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if round(self.p * _LANES) >= _LANES:
            return x * 0
        keep, scale = keep_mask(x.shape, self.p, x.device)
        return _KeepMask.apply(x, keep, scale)


def use_fast_dropout(model: torch.nn.Module) -> int:
    """Replace every nn.Dropout in `model` by a FastDropout of the same p; returns how many."""
    swapped = 0
    for module in model.modules():
        for name, child in module.named_children():
            if type(child) is torch.nn.Dropout:
                setattr(module, name, FastDropout(child.p).train(child.training))
                swapped += 1
    return swapped
