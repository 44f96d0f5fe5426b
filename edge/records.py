"""Read input texts as a stream of records: plain lines, CSV, JSONL or Parquet, from files or stdin.

Everything is read incrementally (constant memory however large the input). Bytes are decoded
here, so a bad byte is reported with its file and line. A UTF-8 BOM and CRLF line ends are
accepted; NUL bytes pass through (shared.text turns them into spaces).

A bad record (invalid UTF-8, a CSV row with the wrong number of fields, a JSONL line that is
not an object or lacks the text field, a missing label) stops the run with a one-line error
naming its place, or with on_error="skip" comes back as a Record whose `error` says why, in
its place in the stream. A break no reader can resynchronise after (a quote never closed, a
missing column, an unreadable file) always stops the run.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator, NamedTuple

from review_classifier.shared.errors import ClassifierError

INPUT_FORMATS = ("auto", "lines", "csv", "jsonl", "parquet")
ON_ERROR = ("stop", "skip")
DEFAULT_TEXT_FIELD = {"csv": "review", "jsonl": "text", "parquet": "review"}
DEFAULT_LABEL_FIELD = {"csv": "sentiment", "jsonl": "label", "parquet": "sentiment"}
# auto: by file name (a trailing .gz is looked through); stdin and anything else: lines
SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
DEFAULT = "\x00default"   # label_field: the format's (or the bundle's) default label column
BOM = b"\xef\xbb\xbf"
STDIN = "-"
SURROGATE = re.compile("[\ud800-\udfff]")
UNDECODABLE = re.compile("[\udc80-\udcff]")   # bytes surrogateescape kept: not UTF-8


class Record(NamedTuple):
    text: str
    label: str | None      # raw label value (only read when asked for)
    source: str            # file name, or <stdin>
    line: int              # line (row, for Parquet) where the record starts, 1-based
    error: str | None = None   # why the record cannot be scored (on_error="skip" only)
    unit: str = "line"
    key: str | None = None     # the value of the id field, when one was asked for

    @property
    def where(self) -> str:
        return f"{self.source}, {self.unit} {self.line}"


class RecordError(ClassifierError):
    """One record is bad; the reader decides whether that stops the run or skips the record."""


def format_of(source: str, input_format: str) -> str:
    """The format one source is read in: the given one, or with "auto" the one its name says."""
    if input_format != "auto":
        return input_format
    if source == STDIN:
        return "lines"
    name = source[:-3] if source.endswith(".gz") else source
    fmt = SUFFIX_FORMATS.get(os.path.splitext(name)[1].lower())
    return fmt or "lines"


def expand_sources(sources: Iterable[str]) -> list[str]:
    """Files as given; a folder becomes the files below it and a glob its matches, each sorted.

    Folders give only their regular files, leaving out hidden ones and names starting with '_'
    (`_SUCCESS`, the `.part` files of other tools). A folder or glob that holds no file is an error, not an empty run.
    """
    out: list[str] = []
    for s in sources:
        if s == STDIN or (os.path.exists(s) and not os.path.isdir(s)):
            out.append(s)
        elif os.path.isdir(s):
            found = sorted(path for root, dirs, files in os.walk(s) for f in files
                           if not f.startswith((".", "_")) and os.path.isfile(path := os.path.join(root, f)))
            if not found:
                raise ClassifierError(f"input folder {s} holds no files")
            out.extend(found)
        elif glob.has_magic(s):
            found = sorted(p for p in glob.glob(s, recursive=True) if not os.path.isdir(p))
            if not found:
                raise ClassifierError(f"no input file matches {s}")
            out.extend(found)
        else:
            raise ClassifierError(f"input file not found: {s}")
    return out


@dataclass(frozen=True)
class ReadSpec:
    """How records are read: the options that travel together from the command line to every reader.

    `label_field` set means every record must have one, and so does `id_field` (its value comes
    back as `Record.key`); label_field=DEFAULT: each format's default label field. `columns`
    ({"text_column", "label_column"}: a bundle's training data) replaces the defaults for the
    tabular formats (CSV, Parquet). `id_flag`: the option that named `id_field`, for the error
    when a file lacks it.
    """
    input_format: str = "auto"
    text_field: str | None = None
    label_field: str | None = None
    errors: str = "strict"
    on_error: str = "stop"
    id_field: str | None = None
    columns: dict | None = None
    id_flag: str = "--id-column"

    def check(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise ClassifierError(f"--input-format must be one of {INPUT_FORMATS}, got {self.input_format!r}")
        if self.errors not in ("strict", "replace"):
            raise ClassifierError(f"--errors must be strict or replace, got {self.errors!r}")
        if self.on_error not in ON_ERROR:
            raise ClassifierError(f"--on-error must be one of {ON_ERROR}, got {self.on_error!r}")


def read_records(sources: Iterable[str], spec: ReadSpec = ReadSpec(), skip: int = 0) -> Iterator[Record]:
    """All records of all sources in order, read as `spec` says.

    `skip`: leave out the first so many records (a resumed run); they are still read and
    checked, so a skipped bad record is counted exactly as it was the first time.
    """
    spec.check()
    n = 0
    for source in sources:
        fmt = format_of(source, spec.input_format)
        if (spec.label_field is not None or spec.id_field is not None) and fmt == "lines":
            raise ClassifierError(f"{_name(source)}: {'labels' if spec.label_field else 'an ' + spec.id_flag} need "
                                  "CSV, JSONL or Parquet input (plain lines carry one text only; set --input-format)")
        table = (spec.columns or {}) if fmt in ("csv", "parquet") else {}
        field = spec.text_field or table.get("text_column") or DEFAULT_TEXT_FIELD.get(fmt)
        label = spec.label_field
        if label == DEFAULT:
            label = table.get("label_column") or DEFAULT_LABEL_FIELD[fmt]
        for rec in _read_source(source, fmt, field, label, spec.errors, spec.on_error, spec.id_field, spec.id_flag):
            n += 1
            if n > skip:
                yield rec


def _read_source(source: str, fmt: str, text_field: str | None, label_field: str | None,
                 errors: str, on_error: str, id_field: str | None = None,
                 id_flag: str = "--id-column") -> Iterator[Record]:
    if fmt == "parquet":
        yield from _read_parquet(source, text_field, label_field, on_error, id_field, id_flag)
        return
    with _open_binary(source) as (f, name):
        if fmt == "lines":
            rows = _read_lines(f, name, errors)
        elif fmt == "csv":
            rows = _read_csv(f, name, text_field, label_field, errors, id_field, id_flag)
        else:
            rows = _read_jsonl(f, name, text_field, label_field, errors, id_field, id_flag)
        try:
            yield from _guard(rows, name, on_error)
        finally:
            rows.close()   # its own clean-up (detaching a CSV stream) before the file closes


def _guard(rows: Iterator[Record | tuple[str, int, RecordError]], name: str, on_error: str) -> Iterator[Record]:
    """Readers yield a (source, line, RecordError) triple for a bad record: raise it, or skip it."""
    for row in rows:
        if isinstance(row, Record):
            yield row
            continue
        source, line, err = row
        if on_error == "stop":
            raise ClassifierError(f"{source}, line {line}: {err}")
        yield Record("", None, source, line, error=str(err))


def _name(source: str) -> str:
    return "<stdin>" if source == STDIN else source


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


def _lines(f: BinaryIO, errors: str) -> Iterator[tuple[int, str | RecordError]]:
    """Decoded lines without their line end (LF or CRLF); a leading BOM dropped."""
    for n, raw in enumerate(f, start=1):
        if n == 1 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        try:
            yield n, raw.decode("utf-8", errors)
        except UnicodeDecodeError as e:
            yield n, RecordError(f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                                 "convert the file to UTF-8 or pass --errors replace")


def _read_lines(f: BinaryIO, name: str, errors: str):
    for n, text in _lines(f, errors):
        yield (name, n, text) if isinstance(text, RecordError) else Record(text, None, name, n)


def _read_jsonl(f: BinaryIO, name: str, text_field: str, label_field: str | None, errors: str,
                id_field: str | None = None, id_flag: str = "--id-column"):
    for n, line in _lines(f, errors):
        try:
            if isinstance(line, RecordError):
                raise line
            yield _jsonl_record(line, name, n, text_field, label_field, errors, id_field, id_flag)
        except RecordError as e:
            yield name, n, e


def _jsonl_record(line: str, name: str, n: int, text_field: str, label_field: str | None,
                  errors: str, id_field: str | None = None, id_flag: str = "--id-column") -> Record:
    if not line.strip():
        if label_field is not None or id_field is not None:
            raise RecordError("empty line where a JSON object with a label was expected")
        return Record("", None, name, n)
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise RecordError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise RecordError("JSON nested too deeply to read") from None
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}")
    text = obj.get(text_field)
    if not isinstance(text, str):
        what = "has no" if text_field not in obj else "has a non-string"
        raise RecordError(f"object {what} {text_field!r} field (fields: {sorted(obj)}); choose one with --text-field")
    if SURROGATE.search(text):   # "\ud800" escapes decode to text no UTF-8 encoder accepts
        if errors == "strict":
            raise RecordError(f"the {text_field!r} text holds an unpaired UTF-16 surrogate escape "
                              "(like \\ud800); fix it or pass --errors replace")
        text = SURROGATE.sub("\ufffd", text)
    label = None
    if label_field is not None:
        if obj.get(label_field) is None:
            raise RecordError(f"object has no {label_field!r} field (fields: {sorted(obj)}); "
                              "choose one with --label-field")
        label = str(obj[label_field])
    key = None
    if id_field is not None:
        if obj.get(id_field) is None:
            raise RecordError(f"object has no {id_field!r} field (fields: {sorted(obj)}); choose one with {id_flag}")
        key = str(obj[id_field])
    return Record(text, label, name, n, key=key)


def _read_csv(f: BinaryIO, name: str, text_field: str, label_field: str | None, errors: str,
              id_field: str | None = None, id_flag: str = "--id-column"):
    csv.field_size_limit(1 << 30)   # a 10 MB review is one field; the text policy clips it later
    # strict decoding keeps undecodable bytes as surrogates, so the row that holds one is named
    stream = io.TextIOWrapper(f, encoding="utf-8-sig", newline="",
                              errors="surrogateescape" if errors == "strict" else errors)
    # strict: a quote that is never closed, or text after a closing quote, is an error instead of
    # a field that silently swallows the rows after it
    reader = csv.reader(stream, strict=True)
    try:
        yield from _csv_rows(reader, name, text_field, label_field, id_field, id_flag)
    finally:
        stream.detach()   # leave stdin's buffer open


def _csv_rows(reader, name: str, text_field: str, label_field: str | None, id_field: str | None,
              id_flag: str = "--id-column"):
    start = 1
    try:
        header = next(reader, None)
        if header is None:
            return
        if any(UNDECODABLE.search(h) for h in header):
            raise ClassifierError(f"{name}, line 1: invalid UTF-8 in the header; convert the file to UTF-8")
        text_col = _column(header, text_field, name, "--text-column")
        label_col = _column(header, label_field, name, "--label-column") if label_field is not None else None
        id_col = _column(header, id_field, name, id_flag) if id_field is not None else None
        start = reader.line_num + 1
        for row in reader:
            if not row:   # a blank line: an empty record, never dropped
                if label_col is not None or id_col is not None:
                    yield name, start, RecordError("empty row where a record with a label or id was expected")
                else:
                    yield Record("", None, name, start)
            elif len(row) != len(header):
                yield name, start, RecordError(f"{len(row)} fields but the header has {len(header)}; "
                                               "quote texts that contain commas")
            elif any(UNDECODABLE.search(c) for c in row):
                yield name, start, RecordError("invalid UTF-8; convert the file to UTF-8 or pass --errors replace")
            else:
                yield Record(row[text_col], row[label_col] if label_col is not None else None, name, start,
                             key=row[id_col] if id_col is not None else None)
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


PARQUET_BATCH = 4096


def _read_parquet(source: str, text_field: str, label_field: str | None, on_error: str,
                  id_field: str | None = None, id_flag: str = "--id-column") -> Iterator[Record]:
    """Rows of a Parquet file, read a batch at a time (pyarrow: installed with the [ray] extra)."""
    if source == STDIN:
        raise ClassifierError("Parquet cannot be read from stdin; give the file")
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ClassifierError(f"{source}: reading Parquet needs pyarrow: pip install 'review-classifier[ray]'") from None
    try:
        pf = pq.ParquetFile(source)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError on a file that is not Parquet
        raise ClassifierError(f"cannot read input {source}: not a Parquet file ({e})") from None
    names = pf.schema_arrow.names
    wanted = {"text": text_field, "label": label_field, "id": id_field}
    flags = {"text": "--text-column", "label": "--label-column", "id": id_flag}
    wanted = {k: names[_column(names, v, source, flags[k])] for k, v in wanted.items() if v is not None}
    row = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH, columns=sorted(set(wanted.values()))):
        cols = {k: batch.column(v).to_pylist() for k, v in wanted.items()}
        for i, text in enumerate(cols["text"]):
            row += 1
            label, key = (cols[k][i] if k in cols else None for k in ("label", "id"))
            problem = None
            if not isinstance(text, str):
                problem = f"the {text_field!r} value is {'null' if text is None else type(text).__name__}, not text"
            elif label_field is not None and label is None:
                problem = f"the {label_field!r} value is null"
            elif id_field is not None and key is None:
                problem = f"the {id_field!r} value is null"
            if problem is None:
                yield Record(text, None if label is None else str(label), source, row, unit="row",
                             key=None if key is None else str(key))
            elif on_error == "stop":
                raise ClassifierError(f"{source}, row {row}: {problem}")
            else:
                yield Record("", None, source, row, error=problem, unit="row")
