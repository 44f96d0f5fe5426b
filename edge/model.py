"""Score texts with a model bundle: the bundle's tokenizer and text policy, then onnxruntime.

Texts become ids exactly as in training (shared.text normalisation and truncation, the
manifest's special tokens), so edge probabilities equal the training job's. Batches are
sorted by length inside a bounded window to cut padding; results come back in input order.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from review_classifier.shared.bundle import ORT_DISABLED_OPTIMIZERS, Manifest, load_bundle
from review_classifier.shared.errors import BundleError, first_line
from review_classifier.shared.logits import pad_ids, softmax
from review_classifier.shared.text import build_windows, is_blank, normalize_text, pool_windows

WINDOW_BATCHES = 64   # batches sorted together by length; bounds memory and output latency
ENCODE_CHUNK = 256    # texts tokenised per call; only their truncated ids are kept
PIPELINE_CHUNK = 16   # texts tokenised per call while one-review runs are in flight
# rows * padded width per batch (16 rows of 64 tokens, 4 of 256). Against 2,048: the fp32 bundle's
# peak RSS on 300 IMDB reviews 231-299 MB instead of 337-360 MB, at the same speed (33.5-35.2
# against 33.6-34.4 reviews/s, alternated runs).
MAX_BATCH_TOKENS = 1024
TRIM_EVERY = 4        # batches between heap trims (heap_trimmer)
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Prediction(NamedTuple):
    label: str | None                   # None: an empty text, which gets no prediction
    probability: float                  # of `label`, temperature-calibrated where the bundle says so (nan: empty)
    probabilities: dict[str, float]     # every label's ({} for an empty text)


NO_PREDICTION = Prediction(None, float("nan"), {})


class EdgeClassifier:
    """A loaded bundle: `predict` / `predict_proba` for a list, `score_stream` for an endless iterable."""

    def __init__(self, bundle: str | os.PathLike, threads: int | None = None, batch_size: int = 32,
                 windows: int | None = None):
        """`windows` replaces the bundle's text policy setting (texts longer than max_length read
        as up to that many windows, logits averaged; 1 = one input, cut by its truncation)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.manifest, self.folder = load_bundle(bundle)
        self.manifest: Manifest
        self.labels: list[str] = list(self.manifest.labels)
        self.policy = self.manifest.policy
        if windows is not None:
            self.policy = dataclasses.replace(self.policy, windows=windows)
        # Dynamic INT8 computes each activation scale over the whole batch tensor, so inside a
        # batch a review's score would depend on its neighbours (by up to 0.15 in probability on
        # IMDB). One review per run keeps scores per-review, and was also the fastest for such
        # models (68.7 vs 63.5 reviews/s at batch 32; docs/decisions.md).
        self.per_review = self.manifest.quant_approach == "dynamic"
        self.temperature = self.manifest.temperature   # calibration fitted at export (1.0: none)
        self.batch_size = 1 if self.per_review else batch_size
        self.threads = threads or available_cpus()
        self._tokenizer = _open_tokenizer(self.folder / self.manifest.tokenizer_file)
        # One review per run splits poorly across onnxruntime's threads: run `threads` reviews at
        # once instead, each on one thread, through the one (thread-safe) session; onnxruntime
        # releases the GIL while it runs. 74.1 against 72.2 reviews/s (docs/decisions.md).
        self._pool = ThreadPoolExecutor(self.threads) if self.per_review and self.threads > 1 else None
        self._trim = None if self.per_review else heap_trimmer()
        self._batches = 0
        self._session = _open_session(self.folder / self.manifest.model_file,
                                      1 if self._pool else self.threads, per_review=self.per_review)
        self._inputs = [i.name for i in self._session.get_inputs()]
        unknown = [n for n in self._inputs if n not in KNOWN_INPUTS]
        if unknown:
            raise BundleError(f"bundle {self.folder}: the model wants inputs {unknown} this runtime cannot feed")
        output = self._session.get_outputs()[0]
        self._output = output.name
        width = output.shape[-1] if output.shape else None
        # a graph with a fixed output width is checked once here, one with a symbolic width per run
        self._width_known = isinstance(width, int)
        if self._width_known:
            self._check_width(width)

    def _check_width(self, width: int) -> None:
        if width != self.num_labels:
            raise BundleError(f"bundle {self.folder}: the manifest names {self.num_labels} labels "
                              f"{self.labels} but the model outputs {width} scores")

    @property
    def restart_every(self) -> int:
        """Texts after which `score_stream` can be restarted and score the rest identically:
        every text when reviews are scored one per run, else a whole length-sorting window
        (its batches are cut from the window, so a restart inside one would cut others)."""
        return 1 if self._pool or self.per_review else self.batch_size * WINDOW_BATCHES

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def encode(self, texts: Sequence[str]) -> list[list[list[int]]]:
        """Per text its model inputs: normalised, tokenised (no special tokens), cut by the
        policy (one input, or windows of a long text), wrapped in the special tokens."""
        m, policy = self.manifest, self.policy
        normed = [normalize_text(t, policy) for t in texts]
        encodings = self._tokenizer.encode_batch(normed, add_special_tokens=False)
        return [build_windows(e.ids, m.prefix_ids, m.suffix_ids, policy) for e in encodings]

    # The Python API's rules, as the CLI's: `texts` is a list (or any iterable) of str, and a bare
    # str is one text (as in Hugging Face's pipeline); an item that is not a str is a TypeError
    # naming its index; an empty or whitespace-only text gets no prediction (NO_PREDICTION, a row
    # of NaN from predict_proba and logits), in its place, never an invented label.

    def predict(self, texts: str | Iterable[str]) -> list[Prediction]:
        """The top label, its probability and every label's, per text, in input order."""
        return list(self.predict_stream(texts))

    def predict_stream(self, texts: str | Iterable[str]) -> Iterator[Prediction]:
        """`predict` for an iterable of any length (bounded memory)."""
        for row in self._rows(texts, self.score_stream):
            if row is None:
                yield NO_PREDICTION
                continue
            best = int(row.argmax())
            yield Prediction(self.labels[best], float(row[best]),
                             {name: float(p) for name, p in zip(self.labels, row)})

    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (len(texts), num_labels), float32, in input order."""
        return self._stack(self._rows(texts, self.score_stream))

    def logits(self, texts: str | Sequence[str]) -> np.ndarray:
        """Raw logits (windows pooled, before the temperature), shape (len(texts), num_labels):
        what a distillation teacher hands its student."""
        return self._stack(self._rows(texts, lambda t: (row for block in self._logit_blocks(t) for row in block)))

    def _rows(self, texts, score) -> Iterator[np.ndarray | None]:
        """score(non-empty texts) row by row, with None in the places of the empty ones."""
        if isinstance(texts, str):
            texts = [texts]
        places: deque[bool] = deque()   # per text read so far: scored (True) or empty (False)

        def scored() -> Iterator[str]:
            for i, text in enumerate(texts):
                if not isinstance(text, str):
                    raise TypeError(f"texts[{i}] is {type(text).__name__}, not str: pass a list of strings")
                places.append(not is_blank(text))
                if places[-1]:
                    yield text

        for row in score(scored()):
            while not places[0]:
                places.popleft()
                yield None
            places.popleft()
            yield row
        while places:   # empty texts at the end (only those are left)
            places.popleft()
            yield None

    def _stack(self, rows: Iterable[np.ndarray | None]) -> np.ndarray:
        empty = np.full(self.num_labels, np.nan, dtype=np.float32)
        out = [empty if r is None else np.asarray(r, dtype=np.float32) for r in rows]
        return np.stack(out) if out else np.zeros((0, self.num_labels), dtype=np.float32)

    def score_stream(self, texts: Iterable[str]) -> Iterator[np.ndarray]:
        """One probability row per text, in order, with bounded memory for any input length."""
        for block in self._logit_blocks(texts):
            yield from self._probabilities(block)

    def _logit_blocks(self, texts: Iterable[str]) -> Iterator[np.ndarray]:
        """Pooled logits, a block of rows at a time, in input order.

        Texts are tokenised ENCODE_CHUNK at a time and kept only as truncated ids; a window of
        WINDOW_BATCHES batches is then sorted by length, scored and yielded in input order.
        Bundles scored one review per run go through `_score_concurrently` instead.
        """
        if self._pool:
            yield from self._score_concurrently(texts)
            return
        it = iter(texts)
        window = self.batch_size * WINDOW_BATCHES
        exhausted = False
        while not exhausted:
            inputs: list[list[list[int]]] = []
            while len(inputs) < window:
                chunk = list(islice(it, min(ENCODE_CHUNK, window - len(inputs))))
                if not chunk:
                    exhausted = True
                    break
                inputs.extend(self.encode(chunk))
            if inputs:
                logits = self._logits_of([w for text in inputs for w in text])
                yield pool_windows(logits, [len(text) for text in inputs])

    def _score_concurrently(self, texts: Iterable[str]) -> Iterator[np.ndarray]:
        """One review per run, `threads` runs at once, in input order; at most WINDOW_BATCHES in flight.

        Texts are tokenised while the pool scores earlier ones, so the pool never waits for the
        tokenizer (a window at a time, it sat idle for each window's tokenising and tail).
        """
        it = iter(texts)
        pending: deque = deque()
        try:
            while chunk := list(islice(it, PIPELINE_CHUNK)):
                for windows in self.encode(chunk):
                    pending.append(self._pool.submit(self._score_one, windows))
                while len(pending) > WINDOW_BATCHES:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # Ctrl-C, a failed run or a closed consumer: drop the reviews not started yet
            for f in pending:
                f.cancel()

    def _score_one(self, windows: list[list[int]]) -> np.ndarray:
        """One text's pooled logits (1 row), each of its windows a run of its own (as per_review wants)."""
        return pool_windows(np.concatenate([self._run([w]) for w in windows]), [len(windows)])

    def _logits_of(self, ids: list[list[int]]) -> np.ndarray:
        """Logits for model inputs, batched by length (input order kept)."""
        logits = np.empty((len(ids), self.num_labels), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            # long texts get fewer rows: attention memory grows with rows * width^2
            width = len(ids[order[min(start + self.batch_size, len(order)) - 1]])
            rows = order[start:start + max(1, min(self.batch_size, MAX_BATCH_TOKENS // width))]
            logits[rows] = self._run([ids[i] for i in rows])
            start += len(rows)
            self._batches += 1
            if self._trim and self._batches % TRIM_EVERY == 0:
                self._trim(0)
        return logits

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Temperature-scaled softmax, float32, one row per text."""
        return softmax(np.asarray(logits, dtype=np.float64) / self.temperature).astype(np.float32)

    def _run(self, batch: list[list[int]]) -> np.ndarray:
        """One onnxruntime run: the raw logits (float32) of a padded batch."""
        feeds = pad_ids(batch, self._inputs, self.manifest.pad_id)
        logits = self._session.run([self._output], feeds)[0]
        if not self._width_known:
            self._check_width(logits.shape[-1])
        return logits


def heap_trimmer():
    """glibc's malloc_trim, or None where the C library is not glibc.

    onnxruntime (its arena is off here) mallocs every activation, and batches change shape, so
    glibc's heap fills with freed, fragmented blocks that it keeps. Trimming every TRIM_EVERY
    batches hands them back: on 300 IMDB reviews with the fp32 bundle and 1,024-token batches,
    peak RSS 232-242 MB with it against 231-299 MB without, at the same speed (34-35 reviews/s).
    """
    import ctypes

    if not sys.platform.startswith("linux"):
        return None
    try:  # the process's own symbols (no ldconfig run, unlike ctypes.util.find_library)
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def available_cpus() -> int:
    """CPUs this process may really use: affinity mask, capped by a cgroup v2/v1 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by cgroup v2 `cpu.max` or v1 `cpu.cfs_quota_us`; None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def _open_tokenizer(path: Path):
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises plain Exception on a bad file
        raise BundleError(f"cannot read tokenizer {path}: {e}") from None
    tok.no_truncation()   # the text policy truncates; the file's own settings must not
    tok.no_padding()
    return tok


def _open_session(path: Path, threads: int, per_review: bool = False, profile_prefix: str | None = None):
    """The edge runtime's onnxruntime session; `profile_prefix` turns on its profiler (benchmarks)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if profile_prefix:
        so.enable_profiling, so.profile_file_prefix = True, profile_prefix
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # Batched runs change shape every batch: an arena would keep the largest batch's buffers
    # forever, and memory patterns are planned for one shape (off, the fp32 bundle's peak RSS on 200
    # IMDB reviews fell from 417 to 333 MB). One review per run (dynamic int8) is bounded by one
    # max_length row, and reuses both: 600 IMDB reviews, arena on vs off, 97.9-98.0 vs 94.9-95.5
    # reviews/s, peak RSS 212 vs 238-241 MB; memory patterns, 68.5 vs 53-57 reviews/s.
    so.enable_cpu_mem_arena = per_review
    so.enable_mem_pattern = per_review
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=ORT_DISABLED_OPTIMIZERS)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        raise BundleError(f"cannot load model {path}: {first_line(e)}") from None
