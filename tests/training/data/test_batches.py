"""The hand-written loop: loss weighting, batching, freezing, learning, checkpoint and resume."""
from __future__ import annotations

import numpy as np

from review_classifier.training.data.batches import collate, length_grouped_batches


def test_length_grouped_batches_cover_everything_once_and_cut_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 250, size=1000).tolist()
    grouped = length_grouped_batches(lengths, 16, seed=1, epoch=0, group=True)
    plain = length_grouped_batches(lengths, 16, seed=1, epoch=0, group=False)
    for batches in (grouped, plain):
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(1000))

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    assert padding(grouped) < 0.2 * padding(plain)
    assert grouped == length_grouped_batches(lengths, 16, seed=1, epoch=0, group=True)   # deterministic
    assert grouped != length_grouped_batches(lengths, 16, seed=1, epoch=1, group=True)   # reshuffled per epoch


def test_ranks_get_disjoint_equal_shares():
    lengths = list(range(1, 102))
    r0 = length_grouped_batches(lengths, 8, 0, 0, True, rank=0, world=2)
    r1 = length_grouped_batches(lengths, 8, 0, 0, True, rank=1, world=2)
    assert len(r0) == len(r1) == 6
    assert not set(i for b in r0 for i in b) & set(i for b in r1 for i in b)


def test_collate_pads_to_multiple_of_8_or_max_length():
    feats = [{"input_ids": [1, 2, 3], "labels": 0}, {"input_ids": [4] * 10, "labels": 1}]
    b = collate(feats, pad_id=0, pad_to=None, accepts_token_types=True)
    assert b["input_ids"].shape == (2, 16) and b["attention_mask"].sum().item() == 13
    assert b["token_type_ids"].sum().item() == 0 and b["labels"].tolist() == [0, 1]
    assert collate(feats, 0, 64, False)["input_ids"].shape == (2, 64)
