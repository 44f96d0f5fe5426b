"""`edge-classify --engine ray`: batch scoring on Ray Data, on a laptop or a cluster, unchanged.

The plan is Ray Data's batch inference: the input files become a dataset of file names; a
task per file reads its records with this package's own readers (the same strict parsing,
places and errors as one-process edge-classify, streamed); a pool of actors, each holding one
EdgeClassifier (one onnxruntime session, built inside the actor: a session cannot be pickled),
scores batches of records; Ray writes the rows as Parquet or JSONL files. The bundle travels
through Ray's object store, so workers on other machines need no copy of it; the input files
and the output folder must be reachable under the same path from every node (one machine, a
shared file system).

Threads: onnxruntime ignores OMP_NUM_THREADS and would start a thread per core in every actor;
each actor asks Ray for `threads` CPUs and its session gets exactly that many intra-op threads
(inter-op 1), so the actors never oversubscribe the CPUs Ray gave them. Reading tasks ask for
no CPU of their own (they are light next to scoring, and would otherwise wait for CPUs the
actors hold).

Exactly once: Ray restarts a dead actor and retries its in-flight batch (Ray Data's default
for actor pools: max_restarts=-1, max_task_retries=-1); a retried write task rewrites its own
file name. The rows are written into a hidden staging folder beside DIR; once the job has
finished, the rows are counted back and every (source, line) checked to occur once, a
`_SUCCESS` file (counts, bundle) is written, and the staging folder is renamed to DIR. A run
that fails removes its staging folder: DIR is complete or absent.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from review_classifier.shared.errors import BundleError, ClassifierError, first_line
from review_classifier.edge import empty_texts
from review_classifier.shared.text import is_blank

RAY_BATCH = 256        # records an actor scores per call
BLOCK_BYTES = 2 << 20


@dataclass
class RaySummary:
    records: int = 0
    scored: int = 0
    empty_count: int = 0
    empty: list[str] = field(default_factory=list)
    rejected: int = 0
    rejected_at: list[str] = field(default_factory=list)


def score_with_ray(opts, bundle: Path, say) -> RaySummary:
    """Run the whole --engine ray job for the CLI's ScoreOptions; returns the counts."""
    try:
        import pyarrow  # noqa: F401  (Ray Data's block format)
        import ray
        import ray.data
    except ImportError:
        raise ClassifierError("--engine ray needs Ray: pip install 'review-classifier[ray]'") from None
    from review_classifier.edge.model import available_cpus
    from review_classifier.shared.bundle import load_bundle

    manifest, folder = load_bundle(bundle)
    if opts.top_k > len(manifest.labels):
        raise ClassifierError(f"--top-k {opts.top_k} is more than the bundle's {len(manifest.labels)} labels")
    _check_first_records(opts, manifest)
    run_id = uuid.uuid4().hex[:8]
    scratch = f"edge-classify-{run_id}"   # the prefix of the actors' bundle copies in their temp folder
    started_here = not ray.is_initialized()
    if started_here:
        _start_ray(ray, opts.address, available_cpus())
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        # One actor per machine with all its CPUs by default: on 2 cores, 1 actor x 2 threads
        # scored 45.7 reviews/s against 41.8 for 2 x 1 (results/bench_scale_avx2.json): the
        # actor's threads overlap tokenising with scoring, and fewer processes share the cores.
        threads = opts.threads or (opts.actors and max(1, cpus // opts.actors)) or _smallest_node_cpus(ray, cpus)
        actors = opts.actors or max(1, cpus // threads)
        if actors * threads > cpus:
            raise ClassifierError(f"--actors {actors} x --threads {threads} needs {actors * threads} CPUs; "
                                  f"the Ray cluster has {cpus}")
        say(f"ray: {actors} actor(s) x {threads} thread(s) on a cluster of {cpus} CPUs, "
            f"{len(opts.sources)} input file(s) -> {opts.output}")
        staging = opts.output.parent / f".{opts.output.name}.{run_id}.partial"
        opts.output.parent.mkdir(parents=True, exist_ok=True)
        try:
            _run_dataset(ray, opts, folder, manifest, staging, actors, threads, say, scratch)
            summary = _check_output(staging, opts)
            _write_rejects(staging, opts)
            (staging / "_SUCCESS").write_text(json.dumps({
                "records": summary.records, "scored": summary.scored, "empty": summary.empty_count,
                "rejected": summary.rejected, "bundle": str(bundle), "labels": list(manifest.labels),
                "inputs": len(opts.sources)}, indent=1) + "\n")
            os.rename(staging, opts.output)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        if started_here:
            ray.shutdown()
        for copy in Path(tempfile.gettempdir()).glob(f"{scratch}-*"):
            shutil.rmtree(copy, ignore_errors=True)
    if summary.empty_count:
        say(empty_texts.warning(summary.empty_count, summary.empty))
    say(f"ray: {summary.records:,} records, {summary.scored:,} scored -> {opts.output}")
    return summary


def _check_first_records(opts, manifest) -> None:
    """Read each input's first record here, before the cluster starts: a missing --id-column or
    text column, or an unreadable file, is then one line instead of the reading task's tracebacks."""
    from review_classifier.edge.records import read_records

    for source in opts.sources:
        next(iter(read_records([source], _read_spec(opts, manifest))), None)


def _smallest_node_cpus(ray, cpus: int) -> int:
    """The CPUs of the smallest live node (an actor must fit on one machine)."""
    sizes = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    sizes = [c for c in sizes if c > 0]
    return max(1, min(sizes)) if sizes else cpus


def _start_ray(ray, address: str | None, cpus: int) -> None:
    # workers' logs stay in Ray's session folder: a bad record is one line here, not a worker's traceback
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=False, configure_logging=True)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:   # a private local cluster on the CPUs this process may use
            ray.init(num_cpus=cpus, include_dashboard=False, **kwargs)
    except Exception as e:  # ConnectionError, RuntimeError, ValueError: all "no cluster"
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise ClassifierError(f"cannot start or join {where}: {first_line(e)}") from None


def _run_dataset(ray, opts, folder: Path, manifest, staging: Path, actors: int, threads: int, say,
                 scratch: str) -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = True
    ctx.print_on_execution_start = False
    # Blocks of ~1,500 IMDB reviews, not Ray's 128 MB: one big input file must still feed every
    # actor (an actor pool hands out whole blocks)
    ctx.target_max_block_size = BLOCK_BYTES
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    bundle_ref = ray.put({p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})
    reader = _FileReader(_read_spec(opts, manifest), opts.empty)
    files = ray.data.from_items([{"path": os.path.abspath(s)} for s in opts.sources],
                                override_num_blocks=len(opts.sources))
    rows = files.flat_map(reader, num_cpus=0)
    scored = rows.map_batches(
        _Scorer, fn_constructor_kwargs={"bundle": bundle_ref, "threads": threads, "top_k": opts.top_k,
                                        "windows": opts.windows, "scratch": scratch,
                                        "hold": os.environ.get(TEST_HOLD_ACTOR)},
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads, batch_size=RAY_BATCH,
        batch_format="pyarrow")
    # Ray Data draws its progress bars on a terminal; for logs (stderr not a TTY) a plain line
    # every PROGRESS_SECONDS with the rows in the files written so far
    reporter = None if sys.stderr.isatty() else _ProgressLines(staging, opts.output_format, say)
    try:
        if opts.output_format == "jsonl":
            scored.write_json(str(staging))
        else:
            scored.write_parquet(str(staging))
    except Exception as e:
        raise _user_error(e) from None
    finally:
        if reporter:
            reporter.stop()


PROGRESS_SECONDS = 10.0


class _ProgressLines:
    """A thread that says how many rows the finished output files hold, now and then."""

    def __init__(self, staging: Path, fmt: str, say, every: float = PROGRESS_SECONDS):
        import threading
        import time

        self.staging, self.fmt, self.say, self.every = staging, fmt, say, every
        self._done = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rows(self) -> int:
        import pyarrow.parquet as pq

        total = 0
        for p in list(self.staging.glob("*")) if self.staging.is_dir() else []:
            try:
                if self.fmt == "parquet" and p.suffix == ".parquet":
                    total += pq.read_metadata(p).num_rows
                elif self.fmt == "jsonl" and p.name.endswith((".json", ".jsonl")):
                    with open(p, "rb") as f:
                        total += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
            except Exception:  # a file still being written: counted next time
                pass
        return total

    def _run(self) -> None:
        import time

        while not self._done.wait(self.every):
            self.say(f"ray: {self.rows():,} records written so far ({time.monotonic() - self._start:.0f} s)")

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


class _FileReader:
    """flat_map: one input file name in, its records out as rows (streamed)."""

    def __init__(self, spec, empty: str):
        self.spec, self.empty = spec, empty

    def __call__(self, item: dict):
        from review_classifier.edge.records import read_records

        skipping = self.spec.on_error != "stop"
        for rec in read_records([item["path"]], self.spec):
            error = empty_texts.record_error(rec.text, rec.error, rec.where, self.empty, skipping=skipping)
            yield {"id": rec.key if rec.key is not None else f"{rec.source}:{rec.line}",
                   "source": rec.source, "line": rec.line, "text": rec.text if error is None else "",
                   "error": error}


def _read_spec(opts, manifest):
    """How each input file is read on the cluster: the run's options, no labels, ids from --id-column."""
    from review_classifier.edge.records import ReadSpec

    return ReadSpec(opts.input_format, opts.text_field, None, opts.errors, opts.on_error,
                    id_field=opts.id_column, columns=manifest.data)


# A test hook: with EDGE_CLASSIFY_TEST_HOLD_ACTOR=FILE in the driver's environment (handed to
# the actors with their arguments), the first scoring call of the run writes
# its process id to FILE and then waits there (to be killed); later calls, the restarted actor's
# included, go on. Tests kill an actor at a known moment instead of racing the job.
TEST_HOLD_ACTOR = "EDGE_CLASSIFY_TEST_HOLD_ACTOR"


def _hold_once(marker: str) -> None:
    import time

    if os.path.exists(marker):   # held once already: the restarted actor goes on
        return
    try:
        fd = os.open(marker + ".tmp", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.rename(marker + ".tmp", marker)   # appears whole
    while True:
        time.sleep(3600)


class _Scorer:
    """map_batches actor: one EdgeClassifier (one onnxruntime session) for the actor's lifetime."""

    def __init__(self, bundle, threads: int, top_k: int, windows: int | None = None,
                 scratch: str = "edge-classify", hold: str | None = None):
        import tempfile

        import ray

        from review_classifier.edge.model import EdgeClassifier

        if isinstance(bundle, ray.ObjectRef):   # the bundle's files, from the object store
            bundle = ray.get(bundle)
        # The files live only while the classifier loads them (the session and the tokenizer are
        # then in memory); the driver also removes its machine's copies of the run at the end, so
        # an actor killed mid-copy leaves nothing either.
        folder = tempfile.mkdtemp(prefix=f"{scratch}-")
        try:
            for name, data in bundle.items():
                Path(folder, name).write_bytes(data)
            self.clf = EdgeClassifier(folder, threads=threads, windows=windows)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.top_k = top_k
        self.schema = output_schema(top_k)
        self._hold = hold

    def __call__(self, batch):
        import numpy as np
        import pyarrow as pa

        if self._hold:
            _hold_once(self._hold)
        texts = batch.column("text").to_pylist()
        errors = batch.column("error").to_pylist()
        todo = [i for i, (t, e) in enumerate(zip(texts, errors)) if e is None and not is_blank(t)]
        n = len(texts)
        label, prob = [None] * n, [None] * n
        top_labels, top_probs = [None] * n, [None] * n
        if todo:
            probs = self.clf.predict_proba([texts[i] for i in todo])
            order = np.argsort(-probs, axis=1, kind="stable")[:, :self.top_k]
            for row, i in enumerate(todo):
                best = order[row]
                label[i], prob[i] = self.clf.labels[best[0]], float(probs[row, best[0]])
                top_labels[i] = [self.clf.labels[j] for j in best]
                top_probs[i] = [float(probs[row, j]) for j in best]
        columns = {"id": batch.column("id"), "source": batch.column("source"), "line": batch.column("line"),
                   "label": label, "probability": prob}
        if self.top_k > 1:
            columns.update(top_labels=top_labels, top_probabilities=top_probs)
        columns["error"] = errors
        return pa.table(columns, schema=self.schema)


def output_schema(top_k: int):
    """The output rows' columns and types, the same in every file (a batch of only empty rows too)."""
    import pyarrow as pa

    fields = [("id", pa.string()), ("source", pa.string()), ("line", pa.int64()),
              ("label", pa.string()), ("probability", pa.float64())]
    if top_k > 1:
        fields += [("top_labels", pa.list_(pa.string())), ("top_probabilities", pa.list_(pa.float64()))]
    fields.append(("error", pa.string()))
    return pa.schema(fields)


def read_output(folder: Path, columns: list[str] | None = None):
    """Every row a --engine ray run wrote (Parquet or JSONL files in `folder`), as one arrow table."""
    import pyarrow as pa
    import pyarrow.dataset as pds
    import pyarrow.json as pj

    parquet = sorted(folder.glob("*.parquet"))
    if parquet:
        return pds.dataset([str(p) for p in parquet], format="parquet").to_table(columns=columns)
    tables = [pj.read_json(p) for p in sorted(folder.glob("*.json*")) if p.stat().st_size]
    if not tables:
        return pa.table({c: [] for c in (columns or ["id", "source", "line", "label", "probability", "error"])})
    table = pa.concat_tables(tables, promote_options="default")
    return table.select(columns) if columns else table


def _check_output(staging: Path, opts) -> RaySummary:
    """Count the rows back; every (source, line) exactly once, or the run fails."""
    import pyarrow.compute as pc

    table = read_output(staging, ["source", "line", "label", "error"])
    keys = pc.binary_join_element_wise(table["source"], pc.cast(table["line"], "string"), "\x00")
    if pc.count_distinct(keys).as_py() != table.num_rows:
        raise ClassifierError(f"ray: the output holds a record more than once ({table.num_rows:,} rows, "
                              f"{pc.count_distinct(keys).as_py():,} distinct); nothing was written to {opts.output}")
    summary = RaySummary(records=table.num_rows)
    error, label = table["error"], table["label"]
    summary.rejected = pc.sum(pc.is_valid(error)).as_py() or 0
    summary.scored = pc.sum(pc.is_valid(label)).as_py() or 0
    summary.empty_count = summary.records - summary.scored - summary.rejected
    for kind, mask in (("rejected_at", pc.is_valid(error)),
                       ("empty", pc.and_(pc.is_null(error), pc.is_null(label)))):
        first = table.filter(mask).sort_by([("source", "ascending"), ("line", "ascending")]).slice(0, 5)
        getattr(summary, kind).extend(f"{s}, line {n}" for s, n in zip(first["source"].to_pylist(),
                                                                        first["line"].to_pylist()))
    return summary


def _write_rejects(staging: Path, opts) -> None:
    """--rejects FILE: the rejected rows' places and reasons, sorted, as JSON lines (atomically)."""
    if opts.rejects is None:
        return
    import pyarrow.compute as pc

    from review_classifier.shared.atomic import atomic_path

    table = read_output(staging, ["source", "line", "error"])
    bad = table.filter(pc.is_valid(table["error"])).sort_by([("source", "ascending"), ("line", "ascending")])
    with atomic_path(opts.rejects) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for row in bad.to_pylist():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _user_error(error: BaseException) -> ClassifierError:
    """A ClassifierError raised inside a Ray task (bad input, bad bundle) as its own one line;
    anything else as one line naming the job's failure."""
    e, seen = error, set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ClassifierError):
            cause = getattr(e, "cause", None)   # a RayTaskError(ClassifierError) holds the original
            original = cause if isinstance(cause, ClassifierError) else e
            wrapped = BundleError if isinstance(original, BundleError) else ClassifierError
            return wrapped(first_line(original))
        e = getattr(e, "cause", None) or e.__cause__ or e.__context__
    return ClassifierError(f"ray job failed: {first_line(error)}")

