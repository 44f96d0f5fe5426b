"""Dropout with a cheaper random mask, for training on the CPU.

torch's CPU dropout draws one Mersenne-Twister number per element (`bernoulli_`): on the
16 x 12 x 256 x 256 attention-probability tensor of a MiniLM batch that is ~115 ms a call,
about a quarter of a bf16 training step on this machine. This module draws 64 random bits
per call of the same generator (so `torch.manual_seed` still makes runs repeatable), reads
them as four 16-bit lanes and keeps an element when its lane clears a threshold: a
Bernoulli mask with the drop probability rounded to 1/65536 (0.1 -> 0.100006), rescaled by
the exact keep probability so that the expected output equals the input.

Two places use it: `use_fast_dropout` swaps the model's nn.Dropout modules, and
`fast_attention_dropout` (a torch function mode, active around the forward pass) runs
`scaled_dot_product_attention` calls that have dropout through `sdpa_with_fast_dropout`:
torch has no fused CPU kernel for attention with dropout and falls back to its math path
with the slow dropout.
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch.overrides import TorchFunctionMode

_SDPA = torch.nn.functional.scaled_dot_product_attention

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


def sdpa_with_fast_dropout(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                           enable_gqa=False):
    """torch's math path of scaled_dot_product_attention (the one its CPU backend runs when
    dropout_p > 0), with the dropout mask from `keep_mask`.

    As in torch: inputs in the autocast dtype when autocast is on, both q and k scaled by
    sqrt(scale), boolean masks select and float masks add.
    """
    dtype = torch.get_autocast_dtype(query.device.type) if torch.is_autocast_enabled(query.device.type) else query.dtype
    q, k, v = query.to(dtype), key.to(dtype), value.to(dtype)
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
    root = math.sqrt(scale if scale is not None else 1.0 / math.sqrt(q.shape[-1]))
    with torch.autocast(query.device.type, enabled=False):
        scores = (q * root) @ (k * root).transpose(-2, -1)
        if is_causal:
            causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
        if attn_mask is not None:
            scores = (scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                      else scores + attn_mask.to(dtype))
        probs = scores.softmax(dim=-1)
        if dropout_p > 0:
            keep, rescale = keep_mask(probs.shape, dropout_p, probs.device)
            probs = _KeepMask.apply(probs, keep, rescale)
        return probs @ v


class _FastAttentionDropout(TorchFunctionMode):
    """Sends scaled_dot_product_attention calls with dropout to `sdpa_with_fast_dropout`."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _SDPA:
            p = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
            if p > 0:
                return sdpa_with_fast_dropout(*args, **kwargs)
        return func(*args, **kwargs)


def fast_attention_dropout(enabled: bool = True):
    """A context for the training forward pass: attention dropout through FastDropout's mask."""
    return _FastAttentionDropout() if enabled else nullcontext()
