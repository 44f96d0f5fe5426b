"""Read input texts as a stream of records: plain lines, CSV or JSONL, from files or stdin.

Everything is read incrementally (constant memory however large the input). Bytes are decoded
here, so a bad byte is reported with its file and line. A UTF-8 BOM and CRLF line ends are
accepted; NUL bytes pass through (shared.text turns them into spaces).
"""
from __future__ import annotations

import csv
import io
import json
import re
import sys
from contextlib import contextmanager
from typing import BinaryIO, Iterable, Iterator, NamedTuple

from review_classifier.shared.errors import ClassifierError

INPUT_FORMATS = ("lines", "csv", "jsonl")
DEFAULT_TEXT_FIELD = {"csv": "review", "jsonl": "text"}
DEFAULT_LABEL_FIELD = {"csv": "sentiment", "jsonl": "label"}
BOM = b"\xef\xbb\xbf"
STDIN = "-"
SURROGATE = re.compile("[\ud800-\udfff]")


class Record(NamedTuple):
    text: str
    label: str | None      # raw label value (only read when asked for)
    source: str            # file name, or <stdin>
    line: int              # line number where the record starts (1-based)

    @property
    def where(self) -> str:
        return f"{self.source}, line {self.line}"


def read_records(sources: Iterable[str], input_format: str = "lines", text_field: str | None = None,
                 label_field: str | None = None, errors: str = "strict") -> Iterator[Record]:
    """All records of all sources in order; `label_field` set means every record must have one."""
    if input_format not in INPUT_FORMATS:
        raise ClassifierError(f"--input-format must be one of {INPUT_FORMATS}, got {input_format!r}")
    if errors not in ("strict", "replace"):
        raise ClassifierError(f"--errors must be strict or replace, got {errors!r}")
    if label_field is not None and input_format == "lines":
        raise ClassifierError("labels need --input-format csv or jsonl (plain lines carry no label)")
    text_field = text_field or DEFAULT_TEXT_FIELD.get(input_format)
    for source in sources:
        with _open_binary(source) as (f, name):
            if input_format == "lines":
                yield from _read_lines(f, name, errors)
            elif input_format == "csv":
                yield from _read_csv(f, name, text_field, label_field, errors)
            else:
                yield from _read_jsonl(f, name, text_field, label_field, errors)


@contextmanager
def _open_binary(source: str):
    if source == STDIN:
        if sys.stdin is None or sys.stdin.closed:
            raise ClassifierError("stdin is closed; give FILE arguments or pipe texts in")
        yield sys.stdin.buffer, "<stdin>"
        return
    try:
        f = open(source, "rb")
    except OSError as e:
        raise ClassifierError(f"cannot read input {source}: {e.strerror or e}") from None
    with f:
        if not source.endswith(".gz"):
            yield f, source
            return
        import gzip
        import zlib

        try:
            with gzip.GzipFile(fileobj=f) as z:
                yield z, source
        except (OSError, EOFError, zlib.error) as e:   # gzip.BadGzipFile is an OSError
            raise ClassifierError(f"cannot read input {source}: not a complete gzip file ({e})") from None


def _lines(f: BinaryIO, name: str, errors: str) -> Iterator[tuple[int, str]]:
    """Decoded lines without their line end (LF or CRLF); a leading BOM dropped."""
    for n, raw in enumerate(f, start=1):
        if n == 1 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        try:
            yield n, raw.decode("utf-8", errors)
        except UnicodeDecodeError as e:
            raise ClassifierError(
                f"{name}, line {n}: invalid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                "convert the file to UTF-8 or pass --errors replace") from None


def _read_lines(f: BinaryIO, name: str, errors: str) -> Iterator[Record]:
    for n, text in _lines(f, name, errors):
        yield Record(text, None, name, n)


def _read_jsonl(f: BinaryIO, name: str, text_field: str, label_field: str | None,
                errors: str) -> Iterator[Record]:
    for n, line in _lines(f, name, errors):
        if not line.strip():
            if label_field is not None:
                raise ClassifierError(f"{name}, line {n}: empty line where a JSON object with a label was expected")
            yield Record("", None, name, n)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ClassifierError(f"{name}, line {n}: not valid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise ClassifierError(f"{name}, line {n}: JSON nested too deeply to read") from None
        if not isinstance(obj, dict):
            raise ClassifierError(f"{name}, line {n}: expected a JSON object, got {type(obj).__name__}")
        text = obj.get(text_field)
        if not isinstance(text, str):
            what = "has no" if text_field not in obj else "has a non-string"
            raise ClassifierError(f"{name}, line {n}: object {what} {text_field!r} field "
                                  f"(fields: {sorted(obj)}); choose one with --text-field")
        if SURROGATE.search(text):   # "\ud800" escapes decode to text no UTF-8 encoder accepts
            if errors == "strict":
                raise ClassifierError(f"{name}, line {n}: the {text_field!r} text holds an unpaired UTF-16 "
                                      "surrogate escape (like \\ud800); fix it or pass --errors replace")
            text = SURROGATE.sub("\ufffd", text)
        label = None
        if label_field is not None:
            if obj.get(label_field) is None:
                raise ClassifierError(f"{name}, line {n}: object has no {label_field!r} field "
                                      f"(fields: {sorted(obj)}); choose one with --label-field")
            label = str(obj[label_field])
        yield Record(text, label, name, n)


def _read_csv(f: BinaryIO, name: str, text_field: str, label_field: str | None,
              errors: str) -> Iterator[Record]:
    csv.field_size_limit(1 << 30)   # a 10 MB review is one field; the text policy clips it later
    stream = io.TextIOWrapper(f, encoding="utf-8-sig", errors=errors, newline="")
    # strict: a quote that is never closed, or text after a closing quote, is an error instead of
    # a field that silently swallows the rows after it
    reader = csv.reader(stream, strict=True)
    try:
        yield from _csv_rows(reader, name, text_field, label_field)
    except UnicodeDecodeError:
        raise ClassifierError(f"{name}, near line {reader.line_num + 1}: invalid UTF-8; "
                              "convert the file to UTF-8 or pass --errors replace") from None
    finally:
        stream.detach()   # leave stdin's buffer open


def _csv_rows(reader, name: str, text_field: str, label_field: str | None) -> Iterator[Record]:
    start = 1
    try:
        header = next(reader, None)
        if header is None:
            return
        text_col = _column(header, text_field, name, "--text-column")
        label_col = _column(header, label_field, name, "--label-column") if label_field is not None else None
        start = reader.line_num + 1
        for row in reader:
            if not row:   # a blank line: an empty record, never dropped
                if label_col is not None:
                    raise ClassifierError(f"{name}, line {start}: empty row where a labelled review was expected")
                yield Record("", None, name, start)
            else:
                if len(row) != len(header):
                    raise ClassifierError(f"{name}, line {start}: {len(row)} fields but the header has "
                                          f"{len(header)}; quote texts that contain commas")
                yield Record(row[text_col], row[label_col] if label_col is not None else None, name, start)
            start = reader.line_num + 1
    except csv.Error as e:
        raise ClassifierError(_csv_error(e, name, start, reader.line_num)) from None


def _csv_error(e: csv.Error, name: str, start: int, last: int) -> str:
    """Where quoting breaks: the line the broken record starts on (and where the reader gave up)."""
    why = str(e)
    if "unexpected end of data" in why or "EOF" in why:
        return (f"{name}, line {start}: a quoted field opened in the record starting here is never closed "
                f"(read to the end of the input, line {last}); close the quote, or double a quote inside "
                "a quoted field")
    return f"{name}, line {start}: malformed CSV ({why}); quote fields that hold quotes, doubling the quotes inside"


def _column(header: list[str], field: str, name: str, flag: str) -> int:
    try:
        return header.index(field)
    except ValueError:
        raise ClassifierError(f"{name}: no column {field!r} in the header {header}; choose one with {flag}") from None
