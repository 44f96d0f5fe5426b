"""FastDropout: a Bernoulli mask from 64-bit draws that behaves like nn.Dropout, and where it is used."""
from __future__ import annotations

import pytest
import torch

from training.config import load_config
from training.fast_dropout import FastDropout, keep_mask, use_fast_dropout
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
def test_cpu_training_loads_eager_attention_with_fast_dropout(tiny_model_dir):
    def loaded(*overrides, training=True):
        model = load_model(load_config("tiny", [f"model={tiny_model_dir}", *overrides]), training=training)
        return model.config._attn_implementation, any(isinstance(m, FastDropout) for m in model.modules())

    assert loaded() == ("eager", True)                 # the tiny BERT drops attention probabilities (0.1)
    assert loaded(training=False) == ("sdpa", False)   # inference keeps the fused kernel
    assert loaded("fast_dropout=false") == ("eager", False)
    assert loaded("attention=sdpa") == ("sdpa", True)


def test_auto_attention_is_eager_only_when_the_model_drops_attention_probabilities():
    from transformers import BertConfig, DistilBertConfig

    from training.model import attention_for_training

    cfg = load_config("tiny")
    assert attention_for_training(cfg, BertConfig(attention_probs_dropout_prob=0.0)) is None
    assert attention_for_training(cfg, BertConfig(attention_probs_dropout_prob=0.1)) == "eager"
    assert attention_for_training(cfg, DistilBertConfig(attention_dropout=0.1)) == "eager"
    assert attention_for_training(load_config("tiny", ["attention=sdpa"]), BertConfig()) == "sdpa"
