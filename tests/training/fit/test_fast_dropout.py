"""fast_dropout: a Bernoulli mask from 64-bit draws that behaves like dropout, attention with it,
and the function mode that routes a training forward pass through them."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from review_classifier.training.fit.fast_dropout import (
    fast_dropout,
    fast_dropout_mode,
    keep_mask,
    sdpa_with_fast_dropout,
)

N = 1_000_003  # odd, so the last 64-bit draw is only partly used


def test_mask_drops_p_of_the_elements_and_keeps_the_expectation():
    torch.manual_seed(0)
    x = torch.rand(N) + 0.5
    y = fast_dropout(x, 0.1)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(6554 / 65536, abs=0.002)      # 0.1 rounded to 1/65536; 6 sigma
    scale = 65536 / (65536 - 6554)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] * scale)
    assert y.mean().item() == pytest.approx(x.mean().item(), rel=0.005)


def test_the_four_16_bit_lanes_of_a_draw_are_independent():
    torch.manual_seed(1)
    keep, _ = keep_mask(torch.Size([4 * 250_000]), 0.5, torch.device("cpu"))
    lanes = keep.view(-1, 4).float()
    assert torch.allclose(lanes.mean(0), torch.full((4,), 0.5), atol=0.005), lanes.mean(0)
    # independent lanes keep all four together 1/16 of the time; copies of one lane would give 1/2
    assert lanes.prod(1).mean().item() == pytest.approx(1 / 16, abs=0.003)
    assert (lanes[:, 0] * lanes[:, 1]).mean().item() == pytest.approx(1 / 4, abs=0.005)


def test_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(2)
    x = torch.randn(4, 33, 17, requires_grad=True)
    w = torch.randn(4, 33, 17)
    y = fast_dropout(x, 0.3)
    (y * w).sum().backward()
    kept = y != 0
    scale = 65536 / (65536 - round(0.3 * 65536))
    assert (1 - kept.float().mean().item()) == pytest.approx(0.3, abs=0.04)   # 2,244 elements: 4 sigma
    assert torch.allclose(y[kept], x.detach()[kept] * scale)
    assert torch.allclose(x.grad[kept], w[kept] * scale)
    assert torch.all(x.grad[~kept] == 0)


def test_the_seed_fixes_the_mask():
    x = torch.ones(10_000)
    torch.manual_seed(3)
    a = fast_dropout(x, 0.2)
    torch.manual_seed(3)
    assert torch.equal(a, fast_dropout(x, 0.2))
    assert not torch.equal(a, fast_dropout(x, 0.2))


def test_p0_and_p1():
    x = torch.randn(100)
    assert fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros(100))


def attention_inputs(seed=0, heads_kv=3):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 3, 7, 8, generator=g, requires_grad=True)
    k, v = (torch.randn(2, heads_kv, 7, 8, generator=g, requires_grad=True) for _ in range(2))
    mask = torch.zeros(2, 1, 1, 7)
    mask[1, ..., 5:] = torch.finfo(torch.float32).min          # the second text is 5 tokens long
    return q, k, v, mask


def reference_attention(q, k, v, mask, keep, rescale, scale=None):
    """Attention in float64 with a given dropout mask."""
    q, k, v, mask = (t.double() for t in (q, k, v, mask))
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    probs = ((q @ k.transpose(-2, -1)) * scale + mask).softmax(-1)
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


@pytest.mark.parametrize("case", ["bool mask", "causal", "negative scale", "grouped kv"])
def test_attention_options_match_torchs_attention_without_dropout(case):
    """With dropout_p = 0 the function is plain attention: compare with torch's own for each option."""
    q, k, v, _ = attention_inputs(heads_kv=1 if case == "grouped kv" else 3)
    kwargs = {"bool mask": {"attn_mask": torch.rand(2, 1, 7, 7, generator=torch.Generator().manual_seed(1)) > 0.3},
              "causal": {"is_causal": True}, "negative scale": {"scale": -0.2},
              "grouped kv": {"enable_gqa": True}}[case]
    if case == "bool mask":
        kwargs["attn_mask"][..., 0] = True                      # every row keeps a key
    expected = F.scaled_dot_product_attention(q, k, v, **kwargs)
    assert torch.allclose(sdpa_with_fast_dropout(q, k, v, **kwargs), expected, atol=1e-5)


def test_attention_under_bf16_autocast_matches_eager_attention_and_keeps_full_masks_finite():
    q, k, v, mask = attention_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sdpa_with_fast_dropout(q, k, v, attn_mask=mask)
        # eager attention under autocast: bf16 products, fp32 mask and softmax
        eager = (((q @ k.transpose(-2, -1)) / math.sqrt(8) + mask).softmax(-1)) @ v
        blind = sdpa_with_fast_dropout(q, k, v, attn_mask=torch.full((2, 1, 1, 7), float("-inf")))
    assert out.dtype == eager.dtype == torch.bfloat16
    assert torch.allclose(out.float(), eager.float(), atol=0.03)
    assert torch.isfinite(blind).all()                          # a fully masked row: uniform, not NaN
    with pytest.raises(ValueError, match="is_causal"):
        sdpa_with_fast_dropout(q, k, v, attn_mask=mask, is_causal=True)


def test_the_mode_reroutes_training_dropout_and_attention_with_dropout_only():
    q, k, v, mask = attention_inputs()
    sdpa = F.scaled_dot_product_attention
    plain = sdpa(q, k, v, attn_mask=mask)
    x = torch.ones(1000)
    with fast_dropout_mode():
        assert torch.equal(sdpa(q, k, v, attn_mask=mask), plain)           # no dropout: torch's kernel
        assert torch.equal(F.dropout(x, 0.5, training=False), x)
        torch.manual_seed(6)
        routed = sdpa(q, k, v, attn_mask=mask, dropout_p=0.3)
        torch.manual_seed(6)
        positional = sdpa(q, k, v, mask, 0.3)
        torch.manual_seed(7)
        module = torch.nn.Dropout(0.4).train()(x)                           # nn.Dropout calls F.dropout
    torch.manual_seed(6)
    assert torch.equal(routed, sdpa_with_fast_dropout(q, k, v, attn_mask=mask, dropout_p=0.3))
    assert torch.equal(positional, routed)
    torch.manual_seed(7)
    assert torch.equal(module, fast_dropout(x, 0.4))
    with fast_dropout_mode(enabled=False):
        torch.manual_seed(6)
        assert not torch.equal(sdpa(q, k, v, attn_mask=mask, dropout_p=0.3), routed)   # torch's own dropout


def test_training_on_the_cpu_sends_every_dropout_through_the_mode(tiny_model_dir, tmp_path, monkeypatch):
    from review_classifier.training.fit import fast_dropout as fd
    from review_classifier.training.fit.loop import fit
    from review_classifier.training.fit.model import load_model
    from tests.training.fit.builders import tiny_cfg, toy_tokenized

    calls = {"attention": 0, "dropout": 0}
    real_sdpa, real_dropout = fd.sdpa_with_fast_dropout, fd.fast_dropout

    def count(kind, real):
        def wrapped(*a, **k):
            calls[kind] += 1
            return real(*a, **k)
        return wrapped

    monkeypatch.setattr(fd, "sdpa_with_fast_dropout", count("attention", real_sdpa))
    monkeypatch.setattr(fd, "fast_dropout", count("dropout", real_dropout))
    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=32, n_valid=16)
    cfg = tiny_cfg(tiny_model_dir, tmp_path, "epochs=1")
    fit(cfg, load_model(cfg), tokenized, tmp_path, tokenizer=tok, log=lambda m: None)
    # 2 batches of 16, none in evaluation. A batch of the 2-layer tiny BERT: 2 attention calls, and
    # 8 dropouts: per layer the attention probabilities, attention output and feed-forward output,
    # then the embeddings and the classifier head
    assert calls == {"attention": 2 * 2, "dropout": 2 * 8}
    calls.update(attention=0, dropout=0)
    fit(tiny_cfg(tiny_model_dir, tmp_path / "off", "epochs=1", "fast_dropout=false"), load_model(cfg), tokenized,
        tmp_path / "off", tokenizer=tok, log=lambda m: None)
    assert calls == {"attention": 0, "dropout": 0}
