"""The edge-classify job as a function: records in, one formatted line per record out."""
from __future__ import annotations

import collections
import json
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, TextIO

import numpy as np

from review_classifier.edge import empty_texts
from review_classifier.edge.model import EdgeClassifier
from review_classifier.edge.output import Formatter
from review_classifier.edge.records import Record
from review_classifier.shared.calibration import uncalibrate
from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.labels import LabelMap, default_aliases_for
from review_classifier.shared.text import is_blank

@dataclass
class Summary:
    records: int = 0
    empty: list[str] = field(default_factory=list)   # where the empty texts were (first few)
    empty_count: int = 0
    rejected: int = 0                                # bad records skipped (--on-error skip)
    rejected_at: list[str] = field(default_factory=list)
    confusion: np.ndarray | None = None              # rows = true, columns = predicted (with --eval)
    confidence: list[float] = field(default_factory=list)      # top probability per scored record (--eval)
    raw_confidence: list[float] = field(default_factory=list)  # the same without the bundle's temperature
    correct: list[bool] = field(default_factory=list)
    truth: list[int] = field(default_factory=list)       # true and predicted class id per scored record (--eval)
    predicted: list[int] = field(default_factory=list)

    COUNTERS = ("records", "empty", "empty_count", "rejected", "rejected_at")

    def counters(self) -> dict:
        """What a resumed run carries on (resume.ResumableOutput's journal); not the --eval lists."""
        return {k: getattr(self, k) for k in self.COUNTERS}

    @classmethod
    def from_counters(cls, counters: dict) -> Summary:
        return cls(**{k: counters[k] for k in cls.COUNTERS if k in counters})

    def calibration(self, temperature: float) -> dict:
        """Top-label ECE of the scored records, with and without the bundle's temperature."""
        from review_classifier.shared.calibration import ECE_BINS, ece_from_confidence

        raw = self.raw_confidence if temperature != 1.0 else self.confidence
        return {"ece": ece_from_confidence(np.array(self.confidence), np.array(self.correct)),
                "ece_uncalibrated": ece_from_confidence(np.array(raw), np.array(self.correct)),
                "temperature": temperature, "ece_bins": ECE_BINS}


@dataclass(frozen=True)
class Scoring:
    """How a run scores, the same for each of its (resumed) parts: the model, the output lines,
    the empty-text policy (edge.empty_texts), whether labels are compared (--eval), a progress bar."""
    clf: EdgeClassifier
    formatter: Formatter
    empty: str = "mark"
    evaluate: bool = False
    progress: bool = False


def classify_records(records: Iterable[Record], scoring: Scoring, out: TextIO | None,
                     rejects: Callable[[str], None] | None = None, *,
                     checkpoint: Callable[[Summary], None] | None = None,
                     start: Summary | None = None, write_header: bool = True) -> Summary:
    """Score every record and write one line per record to `out` (skipped when None), in order.

    Empty or whitespace-only texts are not scored: with scoring.empty="mark" they get an empty line
    record (and are left out of --eval metrics); with "error" the first one stops the run.
    A record the reader rejected (`Record.error`, --on-error skip) also keeps its place with an
    empty record, and goes to `rejects` as a JSON line naming its place and the reason.
    `checkpoint(summary)` is called after every record at which the scoring could restart
    identically (see `EdgeClassifier.restart_every`); `start` carries a resumed run's counters.
    """
    clf, formatter, empty, evaluate = scoring.clf, scoring.formatter, scoring.empty, scoring.evaluate
    empty_texts.check_policy(empty)
    summary = start or Summary()
    restart_every, scored = clf.restart_every, 0
    label_map = _label_map(clf.labels, clf.manifest.data.get("label_aliases")) if evaluate else None
    if evaluate:
        summary.confusion = np.zeros((clf.num_labels, clf.num_labels), dtype=np.int64)
    pending: collections.deque[Record | None] = collections.deque()

    def texts() -> Iterator[str]:
        for rec in records:
            if rec.error is None and not is_blank(rec.text):
                pending.append(rec._replace(text=""))   # keep label and place, not the text
                yield rec.text
                continue
            rec = rec._replace(error=empty_texts.record_error(rec.text, rec.error, rec.where, empty,
                                                               skipping=rejects is not None))
            if rec.error is not None:
                if rejects is None:
                    raise ClassifierError(f"{rec.where}: {rec.error}")
                rejects(json.dumps({"source": rec.source, rec.unit: rec.line, "error": rec.error},
                                   ensure_ascii=False) + "\n")
                summary.rejected += 1
                if len(summary.rejected_at) < 5:
                    summary.rejected_at.append(rec.where)
            else:
                summary.empty_count += 1
                if len(summary.empty) < 5:
                    summary.empty.append(rec.where)
            pending.append(None)

    header = formatter.header()
    if out is not None and header and write_header:
        out.write(header)
    bar = _progress_bar() if scoring.progress else None

    def emit(rec: Record | None, probs: np.ndarray | None) -> None:
        nonlocal scored
        if out is not None:
            out.write(formatter.line(probs))
        if rec is not None and label_map is not None:
            truth, guess = label_map.to_id(rec.label, rec.where), int(probs.argmax())
            summary.confusion[truth, guess] += 1
            summary.correct.append(truth == guess)
            summary.truth.append(truth)
            summary.predicted.append(guess)
            summary.confidence.append(float(probs[guess]))
            if clf.temperature != 1.0:
                summary.raw_confidence.append(float(uncalibrate(probs, clf.temperature).max()))
        summary.records += 1
        scored += probs is not None
        if checkpoint is not None and scored % restart_every == 0:
            checkpoint(summary)
        if bar is not None and summary.records % 256 == 0:
            bar.update(256)

    try:
        for probs in clf.score_stream(texts()):
            while pending[0] is None:
                pending.popleft()
                emit(None, None)
            emit(pending.popleft(), probs)
        while pending:   # trailing empty texts
            pending.popleft()
            emit(None, None)
    finally:
        if bar is not None:
            bar.close()
    return summary


def _label_map(labels: list[str], aliases: dict | None = None) -> LabelMap:
    """The bundle's labels with the aliases its training data used (the manifest's); for a
    bundle that does not record them, the usual IMDB aliases (0/1, neg/pos) where they fit."""
    return LabelMap(names=tuple(labels), aliases=default_aliases_for(labels) if aliases is None else dict(aliases))


def _progress_bar():
    from tqdm import tqdm

    return tqdm(unit=" reviews", file=sys.stderr, delay=1.0, mininterval=0.5, dynamic_ncols=True)
