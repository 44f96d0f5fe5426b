"""The teacher-logits file: one .npz with `logits` (float32, rows x labels), `keys` (sha256 of
each row's text, hex) and `provenance` (JSON: teacher and its hash, data fingerprint, labels,
text policy, versions).

Rows are keyed by their text, so a student run on the same data, or on a reduced share of it,
finds its targets, and a run on other data is refused, naming what is missing. Written by
training.compress.teacher; read by any run with `teacher_logits=FILE` (training.fit.run) and by
the audit. Only the format lives here, so that fit/ reads the file without importing compress/.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from review_classifier.shared.atomic import atomic_write_bytes
from review_classifier.shared.errors import ClassifierError
from review_classifier.training.data.reviews import Reviews

FORMAT = "teacher-logits/1"


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
    path = npz_path(path)
    buf = io.BytesIO()
    np.savez_compressed(buf, logits=np.asarray(logits, dtype=np.float32),
                        keys=np.asarray([text_key(t) for t in texts], dtype="<U32"),
                        provenance=np.asarray(json.dumps({"format": FORMAT, **provenance}, sort_keys=True)))
    atomic_write_bytes(path, buf.getvalue())
    return path


def npz_path(path: str | Path) -> Path:
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
