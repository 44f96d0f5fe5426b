"""Checkpoints: the model (best/) and everything a resume needs (last/), written atomically."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from review_classifier.shared.atomic import atomic_path
from review_classifier.shared.errors import ClassifierError


@dataclass
class TrainState:
    """The loop's progress: everything needed to resume, saved with the weights in `last/`."""
    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    best_f1: float = -1.0
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False   # a rerun after early stopping trains no further
    loss_sum: float = 0.0         # the epoch's training loss so far, so a resumed epoch
    loss_batches: int = 0         # reports the mean over all its batches


def save_model(model, tokenizer, folder: Path) -> None:
    """save_pretrained (safetensors) into `folder`, atomically."""
    with atomic_path(folder) as tmp:
        unwrap(model).save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)


def save_checkpoint(folder: Path, model, optimizer, scheduler, scaler, state: TrainState) -> None:
    """Weights, optimizer, scheduler, RNG and loop state: enough to resume after a kill."""
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file({k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()},
                  str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler else None,
                    "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                            "python": random.getstate()}}, tmp / "training_state.pt")
        (tmp / "state.json").write_text(json.dumps(state.__dict__, indent=2))


def load_checkpoint(folder: Path, model, optimizer, scheduler, scaler) -> TrainState:
    try:   # strict: a checkpoint of another architecture or head is refused, not half-loaded
        unwrap(model).load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:3] if line.strip())   # the keys
        raise ClassifierError(f"{folder} does not fit this model ({detail[:300]}); "
                              "use a new output_dir, or --restart to discard it") from None
    blob = torch.load(folder / "training_state.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    if scaler and blob["scaler"]:
        scaler.load_state_dict(blob["scaler"])
    torch.set_rng_state(blob["rng"]["torch"])
    np.random.set_state(blob["rng"]["numpy"])
    random.setstate(blob["rng"]["python"])
    return TrainState(**json.loads((folder / "state.json").read_text()))


def unwrap(model):
    return model.module if hasattr(model, "module") else model
