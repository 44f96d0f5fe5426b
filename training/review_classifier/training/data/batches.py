"""Batches for training and evaluation: length-grouped shuffling, padding, token types."""
from __future__ import annotations

import inspect
import math
from typing import Iterator

import numpy as np
import torch


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, epoch: int,
                           group: bool, rank: int = 0, world: int = 1) -> list[list[int]]:
    """Shuffled batches; with `group`, each batch holds texts of similar length.

    Sorting happens inside shuffled windows of 64 batches, so batch order stays random and
    the padding is small. Every rank gets the same number of batches.
    """
    rng = np.random.default_rng(seed + epoch)
    order = rng.permutation(len(lengths))
    if group:
        window = batch_size * 64
        chunks = [order[i:i + window] for i in range(0, len(order), window)]
        order = np.concatenate([c[np.argsort([-lengths[j] for j in c], kind="stable")] for c in chunks])
    batches = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    if group:
        rng.shuffle(batches)
    per_rank = len(batches) // world if world > 1 else len(batches)
    return batches[rank::world][:per_rank]


def collate(features: list[dict], pad_id: int, pad_to: int | None, accepts_token_types: bool) -> dict:
    """Pad a batch to its longest text (a multiple of 8) or to `pad_to`."""
    longest = max(len(f["input_ids"]) for f in features)
    width = pad_to or int(math.ceil(longest / 8) * 8)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"], dtype=torch.long)
        mask[i, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask,
             "labels": torch.tensor([f["labels"] for f in features], dtype=torch.long)}
    if accepts_token_types:
        batch["token_type_ids"] = torch.zeros_like(ids)
    if features and "teacher_logits" in features[0]:
        batch["teacher_logits"] = torch.tensor([f["teacher_logits"] for f in features], dtype=torch.float32)
    return batch


def iterate_batches(dataset, batches: list[list[int]], pad_id: int, pad_to: int | None,
                    accepts_token_types: bool, soft_targets: bool = False) -> Iterator[dict]:
    """Collated batches; with `soft_targets`, each carries the dataset's teacher_logits column too."""
    for idx in batches:
        rows = dataset[idx]
        feats = [{"input_ids": a, "labels": b} for a, b in zip(rows["input_ids"], rows["labels"])]
        if soft_targets:
            for f, t in zip(feats, rows["teacher_logits"]):
                f["teacher_logits"] = t
        yield collate(feats, pad_id, pad_to, accepts_token_types)


def accepts_token_type_ids(model) -> bool:
    return "token_type_ids" in inspect.signature(model.forward).parameters
