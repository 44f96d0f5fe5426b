"""FastDropout: a Bernoulli mask from 64-bit draws that behaves like nn.Dropout, and where it is used."""
from __future__ import annotations

import math

import pytest
import torch

from training.config import load_config
from training.fast_dropout import (FastDropout, fast_attention_dropout, keep_mask, sdpa_with_fast_dropout,
                                   use_fast_dropout)
from training.model import load_model

N = 1_000_003  # odd, so the last 64-bit draw is only partly used


def test_mask_drops_p_of_the_elements_and_keeps_the_expectation():
    torch.manual_seed(0)
    drop = FastDropout(0.1).train()
    x = torch.rand(N) + 0.5
    y = drop(x)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(6554 / 65536, abs=0.002)      # 0.1 rounded to 1/65536; 6 sigma
    scale = 65536 / (65536 - 6554)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] * scale)
    assert y.mean().item() == pytest.approx(x.mean().item(), rel=0.005)


def test_every_16_bit_lane_of_a_draw_is_used_evenly():
    torch.manual_seed(1)
    keep, _ = keep_mask(torch.Size([4 * 250_000]), 0.5, torch.device("cpu"))
    lanes = keep.view(-1, 4).float().mean(0)                      # each lane: half kept
    assert torch.allclose(lanes, torch.full((4,), 0.5), atol=0.005), lanes


def test_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(2)
    x = torch.randn(4, 33, 17, requires_grad=True)
    w = torch.randn(4, 33, 17)
    y = FastDropout(0.3).train()(x)
    (y * w).sum().backward()
    kept = y != 0
    scale = 65536 / (65536 - round(0.3 * 65536))
    assert (1 - kept.float().mean().item()) == pytest.approx(0.3, abs=0.02)   # 9,000 draws: 4 sigma
    assert torch.allclose(y[kept], x.detach()[kept] * scale)
    assert torch.allclose(x.grad[kept], w[kept] * scale)
    assert torch.all(x.grad[~kept] == 0)


def test_the_seed_fixes_the_mask():
    drop = FastDropout(0.2).train()
    x = torch.ones(10_000)
    torch.manual_seed(3)
    a = drop(x)
    torch.manual_seed(3)
    assert torch.equal(a, drop(x))
    assert not torch.equal(a, drop(x))


def test_eval_mode_p0_and_p1():
    x = torch.randn(100)
    assert FastDropout(0.5).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x
    assert torch.equal(FastDropout(1.0).train()(x), torch.zeros(100))


def test_swap_replaces_every_dropout_and_keeps_weights_and_eval_outputs(tiny_model_dir):
    model = load_model(load_config("tiny", [f"model={tiny_model_dir}"])).eval()
    before = sum(type(m) is torch.nn.Dropout for m in model.modules())
    ids = torch.randint(1000, 2000, (2, 12))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert use_fast_dropout(model) == before > 0
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert sum(isinstance(m, FastDropout) for m in model.modules()) == before
    assert model.state_dict().keys() == state.keys()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, ref)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU training set-up")
def test_cpu_training_loads_fast_dropout_only_for_training(tiny_model_dir):
    def fast(*overrides, training=True):
        model = load_model(load_config("tiny", [f"model={tiny_model_dir}", *overrides]), training=training)
        return any(isinstance(m, FastDropout) for m in model.modules())

    assert fast() and not fast(training=False) and not fast("fast_dropout=false")


def attention_inputs(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g, dtype=dtype, requires_grad=True) for _ in range(3))
    mask = torch.zeros(2, 1, 1, 7, dtype=dtype)
    mask[1, ..., 5:] = torch.finfo(dtype).min                  # the second text is 5 tokens long
    return q, k, v, mask


def reference_attention(q, k, v, mask, keep, rescale):
    """Attention in float64 with a given dropout mask."""
    q, k, v, mask = (t.double() for t in (q, k, v, mask))
    probs = ((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1]) + mask).softmax(-1)
    return (probs * keep * rescale) @ v


def test_attention_with_fast_dropout_is_attention_with_that_mask_forward_and_backward():
    q, k, v, mask = attention_inputs()
    torch.manual_seed(4)
    out = sdpa_with_fast_dropout(q, k, v, attn_mask=mask, dropout_p=0.25)
    torch.manual_seed(4)
    keep, rescale = keep_mask(torch.Size([2, 3, 7, 7]), 0.25, torch.device("cpu"))
    assert 0 < keep.float().mean() < 1
    q2, k2, v2, _ = attention_inputs()
    ref = reference_attention(q2, k2, v2, mask, keep, rescale)
    assert torch.allclose(out.double(), ref, atol=1e-5)
    out.sum().backward()
    ref.sum().backward()
    for a, b in ((q, q2), (k, k2), (v, v2)):
        assert torch.allclose(a.grad.double(), b.grad.double(), atol=1e-5)


def test_attention_with_fast_dropout_runs_in_the_autocast_dtype():
    q, k, v, mask = attention_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sdpa_with_fast_dropout(q, k, v, attn_mask=mask, dropout_p=0.1)
    assert out.dtype == torch.bfloat16
    torch.manual_seed(5)
    without = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(sdpa_with_fast_dropout(q, k, v, attn_mask=mask), without, atol=1e-5)   # p = 0


def test_the_mode_reroutes_only_attention_with_dropout():
    q, k, v, mask = attention_inputs()
    sdpa = torch.nn.functional.scaled_dot_product_attention
    plain = sdpa(q, k, v, attn_mask=mask)
    with fast_attention_dropout():
        assert torch.equal(sdpa(q, k, v, attn_mask=mask), plain)           # no dropout: torch's kernel
        torch.manual_seed(6)
        routed = sdpa(q, k, v, attn_mask=mask, dropout_p=0.3)
        torch.manual_seed(6)
        positional = sdpa(q, k, v, mask, 0.3)
    torch.manual_seed(6)
    assert torch.equal(routed, sdpa_with_fast_dropout(q, k, v, attn_mask=mask, dropout_p=0.3))
    assert torch.equal(positional, routed)
    with fast_attention_dropout(enabled=False):
        torch.manual_seed(6)
        assert not torch.equal(sdpa(q, k, v, attn_mask=mask, dropout_p=0.3), routed)   # torch's own dropout


def test_training_on_the_cpu_sends_attention_dropout_through_the_mode(tiny_model_dir, tmp_path, monkeypatch):
    from tests.training.test_loop import tiny_cfg, toy_tokenized
    from training import fast_dropout
    from training.loop import fit

    calls = []
    real = fast_dropout.sdpa_with_fast_dropout
    monkeypatch.setattr(fast_dropout, "sdpa_with_fast_dropout", lambda *a, **k: calls.append(1) or real(*a, **k))
    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=32, n_valid=16)
    cfg = tiny_cfg(tiny_model_dir, tmp_path, "epochs=1")
    fit(cfg, load_model(cfg, training=True), tokenized, tmp_path, tokenizer=tok, log=lambda m: None)
    assert len(calls) == 2 * 2           # 2 batches of 16, 2 attention layers; none in evaluation
