"""A teacher's logits on the training split, computed once and saved with their provenance.

Distillation (training.compress.distill_model, or any run with `teacher_logits=FILE`) reads
the file instead of running the teacher each step, so the teacher may be of any architecture
and tokenizer: a fine-tuned checkpoint folder (PyTorch) or a model bundle (edge runtime, with
its windows). Rows are keyed by the sha256 of their text, so a student run on the same data,
or on a reduced share of it, finds its targets, and a run on other data is refused, naming
what is missing. Only the training split is scored, never valid or test.

File: one .npz with `logits` (float32, rows x labels), `keys` (text sha256, hex) and
`provenance` (JSON: teacher and its hash, data fingerprint, labels, text policy, versions).
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from review_classifier.shared.atomic import atomic_write_bytes
from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.text import pool_windows
from review_classifier.training.reviews import Reviews

FORMAT = "teacher-logits/1"
CHUNK = 256   # texts scored between two progress updates


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass
class TeacherLogits:
    logits: np.ndarray            # float32, (rows, labels)
    keys: list[str]               # text_key of each row's text
    provenance: dict

    @property
    def labels(self) -> list[str]:
        return list(self.provenance["labels"])

    def for_reviews(self, reviews: Reviews, labels: Sequence[str], source: str = "") -> np.ndarray:
        """The teacher's logits for each review, in order; refuses other labels or missing texts."""
        where = source or "the teacher logits"
        if list(labels) != self.labels:
            raise ClassifierError(f"{where}: computed for labels {self.labels}, but this run has {list(labels)}")
        row_of = {k: i for i, k in enumerate(self.keys)}
        rows = [row_of.get(text_key(t), -1) for t in reviews.texts]
        missing = [i for i, r in enumerate(rows) if r < 0]
        if missing:
            data = self.provenance.get("data", {})
            raise ClassifierError(
                f"{where}: no teacher logits for {len(missing)} of {len(rows)} training reviews (first: training "
                f"row {missing[0] + 1}); they were computed on {data.get('rows')} reviews of {data.get('source')!r} "
                f"(fingerprint {data.get('fingerprint')}); compute them for this data with `train-classify teacher-logits`")
        return self.logits[np.asarray(rows, dtype=np.int64)]


def save_teacher_logits(path: str | Path, logits: np.ndarray, texts: Sequence[str], provenance: dict) -> Path:
    path = _npz_path(path)
    buf = io.BytesIO()
    np.savez_compressed(buf, logits=np.asarray(logits, dtype=np.float32),
                        keys=np.asarray([text_key(t) for t in texts], dtype="<U32"),
                        provenance=np.asarray(json.dumps({"format": FORMAT, **provenance}, sort_keys=True)))
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_teacher_logits(path: str | Path, teacher: str | Path, train: Reviews, cfg, windows: int | None = None,
                         log=print) -> dict:
    """compute_teacher_logits on the training split, saved to `path`; returns the provenance."""
    from review_classifier.training.reviews import data_fingerprint

    _npz_path(path)   # a wrong name is refused before the teacher runs, not after
    logits, prov = compute_teacher_logits(teacher, train, cfg, windows, data_fingerprint({"train": train}), log)
    save_teacher_logits(path, logits, train.texts, prov)
    return prov


def _npz_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        raise ClassifierError(f"{path}: the teacher logits file must end in .npz")
    return path


def load_teacher_logits(path: str | Path) -> TeacherLogits:
    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"teacher logits file {path} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            logits, keys, prov = z["logits"], z["keys"].tolist(), json.loads(str(z["provenance"]))
    except (OSError, ValueError, KeyError) as e:
        raise ClassifierError(f"{path}: not a teacher logits file ({type(e).__name__}: {e})") from None
    if prov.get("format") != FORMAT:
        raise ClassifierError(f"{path}: format {prov.get('format')!r}, this version reads {FORMAT!r}")
    if logits.ndim != 2 or len(keys) != len(logits) or logits.shape[1] != len(prov.get("labels", ())):
        raise ClassifierError(f"{path}: logits of shape {logits.shape} do not match its {len(keys)} rows "
                              f"and {len(prov.get('labels', ()))} labels")
    if not np.isfinite(logits).all():
        raise ClassifierError(f"{path}: the logits hold NaN or infinite values")
    return TeacherLogits(logits.astype(np.float32), keys, prov)


def is_bundle(path: Path) -> bool:
    return (path / "manifest.json").is_file() or path.name.endswith(".tar.gz")


def teacher_hash(path: Path) -> str:
    """sha256 of the teacher's weights: a bundle's model file, a checkpoint's weight files."""
    from review_classifier.shared.bundle import load_bundle, sha256_file

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
    from review_classifier.shared.provenance import provenance

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


def progress_bar(total: int, desc: str, log, unit: str = "review"):
    """(bar, step(n)): a tqdm bar on a terminal; without one, a plain line every 30 s for logs."""
    from tqdm.auto import tqdm

    from review_classifier.training.runtime import quiet

    bar = tqdm(total=total, desc=desc, unit=unit, disable=quiet())
    state = {"t": time.perf_counter(), "done": 0}

    def step(n: int) -> None:
        bar.update(n)
        state["done"] += n
        if bar.disable and time.perf_counter() - state["t"] >= 30:   # a plain line for logs
            state["t"] = time.perf_counter()
            log(f"{desc}: {state['done']}/{total} {unit}s")
    return bar, step


def _bundle_logits(bundle: Path, texts: Sequence[str], windows: int | None, log):
    from review_classifier.edge.model import EdgeClassifier

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
    import dataclasses

    from review_classifier.training.export import model_input_names, torch_logits
    from review_classifier.training.model import checkpoint_labels, load_model, load_tokenizer
    from review_classifier.training.runtime import setup_device
    from review_classifier.training.text import encode_windows

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
