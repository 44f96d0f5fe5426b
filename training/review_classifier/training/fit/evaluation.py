"""Logits, accuracy and macro F1 of a model on a tokenised split."""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from review_classifier.shared.metrics import accuracy_macro_f1
from review_classifier.training.data.batches import accepts_token_type_ids, iterate_batches
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.fit.device import autocast_for, quiet


@torch.no_grad()
def predict(model, dataset, cfg: TrainConfig, device: torch.device, pad_id: int,
            desc: str = "eval") -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels for a tokenised split, in dataset order (length-sorted internally)."""
    model.eval()
    lengths = dataset["length"] if "length" in dataset.column_names else [len(x) for x in dataset["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    batches = [order[i:i + cfg.eval_batch_size].tolist() for i in range(0, len(order), cfg.eval_batch_size)]
    tt = accepts_token_type_ids(model)
    logits = np.zeros((len(order), model.config.num_labels), dtype=np.float32)
    bar = tqdm(batches, desc=desc, leave=False, disable=quiet())
    for idx, batch in zip(bar, iterate_batches(dataset, batches, pad_id, None, tt)):
        labels = batch.pop("labels")
        del labels
        with autocast_for(cfg.precision, device):
            out = model(**{k: v.to(device) for k, v in batch.items()}).logits
        logits[idx] = out.float().cpu().numpy()
    return logits, np.asarray(dataset["labels"])


def evaluate_split(model, dataset, cfg: TrainConfig, device, pad_id: int, desc: str = "eval") -> dict:
    logits, labels = predict(model, dataset, cfg, device, pad_id, desc)
    return accuracy_macro_f1(labels, logits.argmax(-1), cfg.num_labels)
