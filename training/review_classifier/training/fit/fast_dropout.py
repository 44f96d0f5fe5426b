"""Dropout with a cheaper random mask, for training on the CPU.

torch's CPU dropout draws one Mersenne-Twister number per element (`bernoulli_`): on the
16 x 12 x 256 x 256 attention-probability tensor of a MiniLM batch that is ~115 ms a call,
about 30% of a bf16 training step on this machine. `fast_dropout` draws 64 random bits per
call of the same generator (so `torch.manual_seed` still makes runs repeatable), reads them
as four 16-bit lanes and keeps an element when its lane clears a threshold: a Bernoulli mask
with the drop probability rounded to 1/65536 (0.1 -> 0.100006), rescaled by the exact keep
probability so that the expected output equals the input.

`fast_dropout_mode()` is a torch function mode for the training forward pass: inside it,
`F.dropout` (what every nn.Dropout calls) uses that mask, and `scaled_dot_product_attention`
calls with dropout go to `sdpa_with_fast_dropout`, since torch's CPU attention has no fused
kernel with dropout and would run its math path with the slow dropout. A recomputation outside
the mode (gradient checkpointing) would draw other masks: the loop does not checkpoint.
"""
from __future__ import annotations

import inspect
import math
from contextlib import nullcontext

import torch
from torch.overrides import TorchFunctionMode

_SDPA = torch.nn.functional.scaled_dot_product_attention
_DROPOUT = torch.nn.functional.dropout
_DROPOUT_SIGNATURE = inspect.signature(_DROPOUT)
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
    """A boolean mask (True = keep) with drop probability p (< 1) rounded to 1/65536, and 1/P(keep)."""
    n = shape.numel()
    cut = round(p * _LANES)
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2**63, None)
    keep = bits.view(torch.int16)[:n] >= cut - _LANES // 2
    return keep.view(shape), _LANES / (_LANES - cut)


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of x with `keep_mask`'s mask."""
    if p == 0:
        return x
    if round(p * _LANES) >= _LANES:
        return x * 0
    keep, scale = keep_mask(x.shape, p, x.device)
    return _KeepMask.apply(x, keep, scale)


def sdpa_with_fast_dropout(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                           enable_gqa=False):
    """Attention as eager attention computes it under autocast, with `fast_dropout` on the probabilities.

    Under bf16 autocast, eager attention multiplies q and k in bf16 (so the scores are rounded
    to bf16) and multiplies the probabilities with v in bf16; so does this, and it also keeps the
    mask, softmax and dropout in bf16 in between, which halves their memory traffic. torch's own
    SDPA math path would instead lift q, k and v to fp32. Masks: boolean ones select, float ones
    add; both are held at the dtype's lowest finite value, so a fully masked row is uniform, as in
    eager attention, not NaN.
    """
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: is_causal with an explicit attn_mask")
    autocast = torch.is_autocast_enabled(query.device.type)
    dtype = torch.get_autocast_dtype(query.device.type) if autocast else query.dtype
    q, k, v = query.to(dtype), key.to(dtype), value.to(dtype)
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    root = math.sqrt(abs(scale))           # as torch: q and k each scaled by sqrt(scale)
    lowest = torch.finfo(dtype).min
    with torch.autocast(query.device.type, enabled=False):
        scores = (q * math.copysign(root, scale)) @ (k * root).transpose(-2, -1)
        if is_causal:
            attn_mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        if attn_mask is not None:
            scores = (scores.masked_fill(~attn_mask, lowest) if attn_mask.dtype == torch.bool
                      else scores + attn_mask.to(dtype).clamp_min(lowest))
        probs = fast_dropout(scores.softmax(dim=-1), dropout_p)
        return probs @ v


class _FastDropoutMode(TorchFunctionMode):
    """Sends training-mode F.dropout and attention-with-dropout calls to the functions above."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _DROPOUT:
            call = _DROPOUT_SIGNATURE.bind(*args, **kwargs)
            call.apply_defaults()
            a = call.arguments
            if a["training"] and a["p"] > 0 and not a["inplace"]:
                return fast_dropout(a["input"], a["p"])
        elif func is _SDPA:
            if kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0) > 0:
                return sdpa_with_fast_dropout(*args, **kwargs)
        return func(*args, **kwargs)


def fast_dropout_mode(enabled: bool = True):
    """A context for the training forward pass: dropout (attention's too) through `fast_dropout`."""
    return _FastDropoutMode() if enabled else nullcontext()
