"""The hand-written loop: loss weighting, batching, freezing, learning, checkpoint and resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from review_classifier.training.config.settings import load_config
from review_classifier.training.fit.model import load_model
from review_classifier.training.fit.optimization import class_weighted_loss, kd_loss, make_optimizer, make_scheduler


def test_binary_loss_uses_pos_weight_from_the_training_ratio():
    loss_fn = class_weighted_loss([0, 0, 0, 1], 2)      # 3 negatives per positive -> pos_weight 3
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    y = torch.tensor([1, 0])
    margin = torch.tensor([2.0, -1.0])
    expected = (3 * torch.log1p(torch.exp(-margin[0])) + torch.log1p(torch.exp(margin[1]))) / 2
    assert loss_fn(logits, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_multiclass_loss_weights_rare_classes_up():
    loss_fn = class_weighted_loss([0] * 6 + [1] * 3 + [2] * 1, 3)
    logits = torch.zeros(1, 3)
    rare, common = loss_fn(logits, torch.tensor([2])), loss_fn(logits, torch.tensor([0]))
    # weighted mean over one sample is the plain CE (log 3) whatever the weight
    assert rare.item() == pytest.approx(np.log(3), rel=1e-6) and common.item() == pytest.approx(np.log(3), rel=1e-6)
    two = loss_fn(torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, 5.0]]), torch.tensor([2, 0]))
    w = np.array([10 / 18, 10 / 9, 10 / 3])
    ce_right, ce_wrong = np.log1p(2 * np.exp(-5)), 5 + np.log1p(2 * np.exp(-5))
    assert two.item() == pytest.approx((w[2] * ce_right + w[0] * ce_wrong) / (w[2] + w[0]), rel=1e-5)


def test_step_and_linear_schedules(tiny_model_dir):
    model = load_model(load_config("tiny", [f"model={tiny_model_dir}"]))
    cfg = load_config("tiny", [f"model={tiny_model_dir}", "scheduler=step", "step_size=1", "gamma=0.5",
                               "optimizer=nadam", "lr=1e-3"])
    opt = make_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.NAdam)
    sched = make_scheduler(cfg, opt, steps_per_epoch=10)
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4)
    cfg = load_config("tiny", [f"model={tiny_model_dir}", "warmup_ratio=0.5", "epochs=2", "lr=1e-3"])
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt, steps_per_epoch=10)     # 20 steps, 10 of warm-up
    for _ in range(5):
        opt.step(), sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4)


def test_kd_loss_is_zero_when_student_matches_teacher_and_alpha_is_one():
    logits = torch.tensor([[1.0, -1.0], [0.2, 0.3]])
    labels = torch.tensor([0, 1])
    assert kd_loss(logits, logits, labels, 2.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    ce = torch.nn.functional.cross_entropy(logits, labels).item()
    assert kd_loss(logits, logits, labels, 2.0, 0.0).item() == pytest.approx(ce, rel=1e-6)
