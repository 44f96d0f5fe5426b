"""`edge-classify --eval`'s slices: each scored record's length in the model's tokens, whether
the model read it whole, and its --slice-column value, noted as the records stream past.

The records reach the scorer unchanged; only the records it scores (text present, no read
error) are noted, in order, so the i-th note belongs to the i-th scored record and to the i-th
entry of the scorer's summary (truth, predicted). The slice column's value travels as the
record's key (records.read_records' id field).
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

from review_classifier.edge.records import Record
from review_classifier.shared.slices import slice_report
from review_classifier.shared.text import is_blank, is_cut, normalize_text


class SliceProbe:
    """Notes each scored record's token count, cut or not, and slice value; then `report`."""

    def __init__(self, clf, column: str | None = None):
        from review_classifier.edge.model import _open_tokenizer

        self.policy = clf.policy
        self.specials = len(clf.manifest.prefix_ids) + len(clf.manifest.suffix_ids)
        self.budget = self.policy.max_length - self.specials
        self.column = column
        self._tokenizer = _open_tokenizer(clf.folder / clf.manifest.tokenizer_file)
        self.tokens: list[int] = []
        self.truncated: list[bool] = []
        self.values: list[str | None] = []

    def reader(self, read: Callable[..., Iterable[Record]]) -> Callable[..., Iterator[Record]]:
        """`read` (records.read_records with its arguments bound), its records watched."""
        return lambda *args, **kwargs: self.watch(read(*args, **kwargs))

    def watch(self, records: Iterable[Record]) -> Iterator[Record]:
        for rec in records:
            if rec.error is None and not is_blank(rec.text):
                n = len(self._tokenizer.encode(normalize_text(rec.text, self.policy), add_special_tokens=False).ids)
                self.tokens.append(n + self.specials)
                self.truncated.append(is_cut(n, self.budget, self.policy))
                self.values.append(rec.key)
            yield rec

    def report(self, truth: list[int], predicted: list[int], labels: list[str]) -> dict:
        if len(truth) != len(self.tokens):
            raise RuntimeError(f"{len(truth)} scored records but {len(self.tokens)} noted for slices")
        columns = {self.column: self.values} if self.column else None
        return slice_report(truth, predicted, labels, tokens=self.tokens, truncated=self.truncated,
                            max_length=self.policy.max_length, columns=columns)
