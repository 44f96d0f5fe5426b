"""A teacher's logits on the training split, computed once and saved with their provenance.

Distillation (training.compress.distil.distill_model, or any run with `teacher_logits=FILE`) reads
the file instead of running the teacher each step, so the teacher may be of any architecture
and tokenizer: a fine-tuned checkpoint folder (PyTorch) or a model bundle (edge runtime, with
its windows). Only the training split is scored, never valid or test.

The file's format: training.data.teacher_logits.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from review_classifier.edge.model import EdgeClassifier
from review_classifier.shared.bundle import load_bundle, sha256_file
from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.provenance import provenance
from review_classifier.shared.text import pool_windows
from review_classifier.training.bundle.export import model_input_names, torch_logits
from review_classifier.training.data.reviews import Reviews, data_fingerprint
from review_classifier.training.data.splits import load_splits
from review_classifier.training.data.teacher_logits import npz_path, save_teacher_logits
from review_classifier.training.data.text import encode_windows
from review_classifier.training.fit.device import progress_bar, setup_device
from review_classifier.training.fit.model import checkpoint_labels, load_model, load_tokenizer

CHUNK = 256   # texts scored between two progress updates


def write_teacher_logits(path: str | Path, teacher: str | Path, train: Reviews, cfg, windows: int | None = None,
                         log=print) -> dict:
    """compute_teacher_logits on the training split, saved to `path`; returns the provenance."""
    npz_path(path)   # a wrong name is refused before the teacher runs, not after
    logits, prov = compute_teacher_logits(teacher, train, cfg, windows, data_fingerprint({"train": train}), log)
    save_teacher_logits(path, logits, train.texts, prov)
    return prov


def write_train_logits(path: str | Path, teacher: str | Path, cfg, windows: int | None = None, log=print) -> dict:
    """write_teacher_logits on the config's training split (never valid or test)."""
    return write_teacher_logits(path, teacher, load_splits(cfg)["train"], cfg, windows, log)


def is_bundle(path: Path) -> bool:
    return (path / "manifest.json").is_file() or path.name.endswith(".tar.gz")


def teacher_hash(path: Path) -> str:
    """sha256 of the teacher's weights: a bundle's model file, a checkpoint's weight files."""
    if is_bundle(path):
        manifest, folder = load_bundle(path)
        return sha256_file(folder / manifest.model_file)
    weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    if not weights:
        raise ClassifierError(f"{path}: neither a model bundle nor a checkpoint folder with weights")
    h = hashlib.sha256()
    for w in weights:
        h.update(bytes.fromhex(sha256_file(w)))
    return h.hexdigest()


def compute_teacher_logits(teacher: str | Path, reviews: Reviews, cfg, windows: int | None = None,
                           fingerprint: str = "", log=print) -> tuple[np.ndarray, dict]:
    """(logits, provenance) of `teacher` on `reviews`. A bundle scores with its own text policy
    (`windows` overrides its windows); a checkpoint with cfg's (max_length, truncation, windows)."""
    teacher = Path(teacher)
    t = time.perf_counter()
    if is_bundle(teacher):
        logits, policy, labels = _bundle_logits(teacher, reviews.texts, windows, log)
        kind = "bundle"
    else:
        logits, policy, labels = _checkpoint_logits(teacher, reviews.texts, cfg, windows, log)
        kind = "checkpoint"
    seconds = time.perf_counter() - t
    preds = logits.argmax(-1)
    prov = {
        "teacher": {"kind": kind, "path": str(teacher), "sha256": teacher_hash(teacher)},
        "labels": labels, "text_policy": policy,
        "data": {"source": reviews.source, "split": "train", "rows": len(reviews), "fingerprint": fingerprint},
        "teacher_train_accuracy": round(float((preds == np.asarray(reviews.labels)).mean()), 4) if len(reviews) else None,
        "seconds": round(seconds, 1),
        "provenance": provenance({"train": reviews.source}),
    }
    return logits, prov


def _bundle_logits(bundle: Path, texts: Sequence[str], windows: int | None, log):
    clf = EdgeClassifier(bundle, windows=windows)
    bar, step = progress_bar(len(texts), "teacher logits", log)
    parts = []
    for i in range(0, len(texts), CHUNK):
        parts.append(clf.logits(texts[i:i + CHUNK]))
        step(len(parts[-1]))
    bar.close()
    logits = np.concatenate(parts) if parts else np.zeros((0, clf.num_labels), np.float32)
    return logits, clf.policy.to_dict(), list(clf.labels)


def _checkpoint_logits(folder: Path, texts: Sequence[str], cfg, windows: int | None, log):
    labels = checkpoint_labels(folder)
    tcfg = dataclasses.replace(cfg, labels=labels, label_aliases={},
                               **({"windows": windows} if windows else {}))
    model = load_model(tcfg, str(folder)).to(setup_device())
    tokenizer = load_tokenizer(tcfg, str(folder))
    names, pad_id = model_input_names(model, tokenizer), tokenizer.pad_token_id or 0
    policy = tcfg.text_policy
    bar, step = progress_bar(len(texts), "teacher logits", log)
    parts = []
    for i in range(0, len(texts), CHUNK):
        per_text = encode_windows(texts[i:i + CHUNK], tokenizer, policy)
        flat = torch_logits(model, [w for text in per_text for w in text], names, pad_id, cfg.eval_batch_size)
        parts.append(pool_windows(flat, [len(text) for text in per_text]))
        step(len(per_text))
    bar.close()
    logits = np.concatenate(parts) if parts else np.zeros((0, len(labels)), np.float32)
    return logits.astype(np.float32), policy.to_dict(), labels
