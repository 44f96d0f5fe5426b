"""`--output FILE` that survives an interrupt or a kill: written as FILE.partial, journalled, resumable.

While a run writes, its output is FILE.partial and FILE.partial.json is the journal: how many
input records are complete, how many bytes of FILE.partial (and of the rejects file's own
.partial) hold them, the counters of the run's summary, and what the run was (its inputs'
sizes and modification times, the bundle's manifest checksum, every option that changes a
byte of output). The journal is written only after the output's bytes are on disk (fsync),
and replaced atomically, so after any stop, even SIGKILL or a power cut, it describes a prefix
of the finished file. `--resume` cuts the partial files back to that prefix, skips that many
records and goes on; the finished file equals, byte for byte, the one a run without a stop
writes. Checkpoints are taken only where the scoring can restart identically (every record
for bundles scored one review per run; at the end of a length-sorting window for batched
ones, whose batches would otherwise be cut differently). FILE appears, by rename, only when
the run is complete.

One run at a time writes FILE: a run takes an exclusive lock on `.FILE.lock` beside it (held
until it ends, then removed; a second run names the process that holds it and exits 2), clears
what a killed run of FILE left (the journal's temporary copies), and when FILE is complete
records what the run was (in the user's cache folder), so that `--resume` on a finished FILE
says "nothing to do" only when FILE is this run's, and starts over otherwise. A write that
fails (disk full, a file-size limit) keeps FILE.partial and the journal of its last checkpoint
for `--resume`.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from review_classifier.shared.cache import cache_root
from review_classifier.shared.atomic import atomic_write_text, recover_interrupted
from review_classifier.shared.bundle import MANIFEST, sha256_file
from review_classifier.shared.errors import ClassifierError

JOURNAL_VERSION = 1
CHECKPOINT_SECONDS = 5.0
# records between checkpoints at most (also a test hook: EDGE_CLASSIFY_CHECKPOINT_RECORDS)
CHECKPOINT_RECORDS = int(os.environ.get("EDGE_CLASSIFY_CHECKPOINT_RECORDS", 50_000))


class WriteError(ClassifierError):
    """An output could not be written (no space left, a file-size limit, permissions)."""

    exit_code = 5


def write_error(path, e: OSError) -> WriteError:
    return WriteError(f"cannot write {path}: {e.strerror or e}")


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial.json")


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


class OutputLock:
    """The exclusive right to write FILE (fcntl.flock on .FILE.lock, held while the run lasts and
    released however the process ends; the lock file goes at the end), and the record of the run
    that wrote the finished FILE (kept in the user's cache folder, so nothing stays beside FILE)."""

    def __init__(self, output: Path):
        self.output, self.path = output, lock_path(output)
        self.finished: dict | None = None   # the run that wrote the complete FILE (record_finished)
        self._f = None

    def __enter__(self) -> OutputLock:
        self._lock()
        self.finished = _read_json(_finished_record(self.output))
        for leftover in (journal_path(self.output), partial_path(self.output), self.output):
            recover_interrupted(leftover)   # temporary copies a killed run left; no one else writes here
        return self

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:   # not POSIX: no lock
            return
        while self._f is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                f = open(self.path, "a+", encoding="utf-8")
            except OSError as e:
                raise write_error(self.path, e) from None
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip()
                f.close()
                raise ClassifierError(f"--output {self.output} is being written by another edge-classify run "
                                      f"(process {holder or 'unknown'}, lock {self.path}); wait for it or choose "
                                      "another file") from None
            try:   # the run before may have removed the file between our open and our lock: lock anew
                same = os.fstat(f.fileno()).st_ino == os.stat(self.path).st_ino
            except OSError:
                same = False
            if same:
                self._f = f
            else:
                f.close()
        self._f.seek(0)
        self._f.truncate()
        self._f.write(f"{os.getpid()}\n")
        self._f.flush()

    def __exit__(self, *exc) -> None:
        if self._f is not None:
            self.path.unlink(missing_ok=True)   # while still held: a waiting run locks a new file
            self._f.close()

    def record_finished(self, identity: dict | None) -> None:
        """FILE is complete: remember what wrote it (None: a run that --resume could not repeat,
        such as one from stdin, so the record of an earlier run goes)."""
        record = _finished_record(self.output)
        try:
            if identity is None:
                record.unlink(missing_ok=True)
                return
            st = self.output.stat()
            self.finished = {"output": os.path.realpath(self.output), "identity": identity,
                             "size": st.st_size, "mtime_ns": st.st_mtime_ns}
            atomic_write_text(record, json.dumps(self.finished, sort_keys=True) + "\n")
        except OSError:
            pass   # no record: a later --resume of FILE starts over, which is safe

    def wrote_complete(self, identity: dict) -> bool:
        """FILE exists unchanged since this same run finished it."""
        try:
            st = self.output.stat()
        except OSError:
            return False
        return self.finished == {"output": os.path.realpath(self.output), "identity": identity,
                                 "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _finished_record(output: Path) -> Path:
    """Where the record of the run that finished `output` lives, keyed by its real path."""
    import hashlib

    cache = cache_root() / "outputs"
    return cache / (hashlib.sha256(os.path.realpath(output).encode()).hexdigest()[:32] + ".json")


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def run_identity(sources: list[str], bundle_folder: Path, options: dict) -> dict:
    """What a run is, for deciding whether a journal belongs to it: inputs, bundle and options."""
    inputs = []
    for s in sources:
        st = os.stat(s)
        inputs.append({"path": os.path.abspath(s), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    digest = sha256_file(bundle_folder / MANIFEST)   # it lists every other file's checksum
    return {"version": JOURNAL_VERSION, "inputs": inputs, "bundle_manifest_sha256": digest, "options": options}


class _Sink:
    """One output file written as bytes at a known offset (text in, UTF-8 out)."""

    def __init__(self, path: Path, offset: int):
        self.path = path
        mode = "r+b" if offset and path.exists() else "wb"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, mode)
        except OSError as e:
            raise write_error(path, e) from None
        if offset:
            if path.stat().st_size < offset:
                self._f.close()
                raise ClassifierError(f"--resume: {path} is shorter than its journal says "
                                      "(changed by something else); rerun without --resume")
            self._f.truncate(offset)
            self._f.seek(offset)

    def write(self, text: str) -> None:
        try:
            self._f.write(text.encode("utf-8"))
        except OSError as e:
            raise write_error(self.path, e) from None

    def sync(self) -> int:
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as e:
            raise write_error(self.path, e) from None
        return self._f.tell()

    def close(self) -> None:
        """Close; what a failed write left in the buffer is dropped (the journal's offset rules)."""
        try:
            self._f.close()
        except OSError:
            pass


class ResumableOutput:
    """The output (and optional rejects) file of one run, with its journal; see the module docstring."""

    def __init__(self, output: Path, rejects: Path | None, identity: dict, resume: bool, say,
                 lock: OutputLock | None = None):
        self.output, self.rejects, self.identity, self.say = output, rejects, identity, say
        self.counters: dict = {"records": 0}   # the run's summary so far (classify.Summary.counters)
        self.done = False
        self.lock = lock
        offsets = {"output": 0, "rejects": 0}
        journal = self._earlier_journal(resume)
        if journal is not None and not resume:
            say(f"note: discarding the unfinished {partial_path(output)} of an earlier run "
                f"({journal['counters']['records']:,} records); --resume would have continued it")
        elif journal is not None:
            if journal["identity"] != identity:
                raise ClassifierError(
                    f"--resume: {partial_path(output)} was written for other inputs, bundle or options "
                    f"({_difference(journal['identity'], identity)}); rerun without --resume to start over")
            offsets = journal["offsets"]
            self.counters = journal["counters"]
            say(f"resuming after {self.counters['records']:,} records of {partial_path(output)}")
        elif resume and output.exists():
            if lock is not None and lock.wrote_complete(identity):
                self.done = True
                say(f"--resume: {output} is complete (no unfinished run); nothing to do")
                return
            say(f"--resume: {output} was not written by this run (other inputs, bundle or options, or changed "
                "since); starting from the beginning")
        elif resume:
            say(f"--resume: no unfinished run of {output}; starting from the beginning")
        self.fresh = offsets["output"] == 0   # nothing written yet: a CSV header is still due
        self._out = _Sink(partial_path(output), offsets["output"])
        self._rej = None
        try:
            self._rej = _Sink(partial_path(rejects), offsets["rejects"]) if rejects else None
            self._last_time, self._last_records = time.monotonic(), self.counters["records"]
            if journal is None or not resume:
                self._journal()   # a kill before the first checkpoint leaves a journal of 0 records
        except BaseException:
            self.keep()
            raise
        self._hold = _test_hold()

    def _earlier_journal(self, resume: bool) -> dict | None:
        """The journal an earlier run left; without --resume an unreadable one is only noted."""
        try:
            return _read_journal(journal_path(self.output))
        except ClassifierError:
            if resume:
                raise
            self.say(f"note: discarding the unreadable journal {journal_path(self.output)} of an earlier run")
            return None

    def write(self, text: str) -> None:
        self._out.write(text)

    def reject(self, line: str) -> None:
        self._rej.write(line)

    def maybe_checkpoint(self, counters: dict) -> None:
        """Called at every point where the run could restart identically."""
        self.counters = counters
        hold = self._hold is not None and counters["records"] >= self._hold.records
        if hold:   # the test hook: journalled here, or killed just before this checkpoint
            if self._hold.at_checkpoint:
                self._journal()
        elif (counters["records"] - self._last_records >= CHECKPOINT_RECORDS
                or time.monotonic() - self._last_time >= CHECKPOINT_SECONDS):
            self._journal()
        if hold:
            self._hold.wait(self)

    def _journal(self) -> None:
        offsets = {"output": self._out.sync(), "rejects": self._rej.sync() if self._rej else 0}
        path = journal_path(self.output)
        try:
            atomic_write_text(path, json.dumps({
                "identity": self.identity, "offsets": offsets, "counters": self.counters}, indent=1) + "\n")
        except OSError as e:
            raise write_error(path, e) from None
        self._last_time, self._last_records = time.monotonic(), self.counters["records"]

    def finish(self) -> None:
        """Everything written: the partial files take their final names, the journal goes."""
        self._out.sync()
        self._out.close()
        if self._rej:
            self._rej.sync()
            self._rej.close()
            os.replace(partial_path(self.rejects), self.rejects)
        os.replace(partial_path(self.output), self.output)
        journal_path(self.output).unlink(missing_ok=True)
        if self.lock is not None:
            self.lock.record_finished(self.identity)

    def keep(self) -> None:
        """Interrupted: leave the partial files and the last checkpoint's journal for --resume."""
        self._out.close()
        if self._rej:
            self._rej.close()

    def discard(self) -> None:
        """Failed on a user error: nothing of this run stays."""
        self.keep()
        for p in (partial_path(self.output), journal_path(self.output)) + \
                ((partial_path(self.rejects),) if self.rejects else ()):
            p.unlink(missing_ok=True)


def _read_journal(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
        journal["identity"], journal["offsets"], journal["counters"]["records"]
        return journal
    except (OSError, ValueError, KeyError, TypeError):
        raise ClassifierError(f"--resume: cannot read the journal {path}; rerun without --resume") from None


def _difference(old: dict, new: dict) -> str:
    if old.get("version") != new.get("version"):
        return "another journal version"
    if old["inputs"] != new["inputs"]:
        return "the input files differ or changed"
    if old["bundle_manifest_sha256"] != new["bundle_manifest_sha256"]:
        return "another model bundle"
    keys = sorted(k for k in set(old["options"]) | set(new["options"])
                  if old["options"].get(k) != new["options"].get(k))
    return "options differ: " + ", ".join(keys)


# A test hook, so that tests stop a run at an exact place instead of racing it:
# EDGE_CLASSIFY_TEST_HOLD="RECORDS:MODE:FD" makes the run, at its first restart point at or past
# RECORDS records, write that record count to file descriptor FD (inherited from the test) and
# wait there until it is signalled (at most HOLD_SECONDS, then it exits with 124). MODE
# "checkpoint" journals that point first; "between" leaves it written but not journalled (a kill
# between two checkpoints).
TEST_HOLD = "EDGE_CLASSIFY_TEST_HOLD"
HOLD_SECONDS = 600


class _Hold:
    def __init__(self, spec: str):
        records, mode, fd = spec.split(":")
        self.records, self.at_checkpoint, self.fd = int(records), mode == "checkpoint", int(fd)

    def wait(self, out: ResumableOutput) -> None:
        out._out._f.flush()   # what was written reaches the file, as with a kill at any moment
        os.write(self.fd, f"{out.counters['records']}\n".encode())
        time.sleep(HOLD_SECONDS)   # a test that failed before it killed the run must not leave it behind
        os._exit(124)


def _test_hold() -> _Hold | None:
    spec = os.environ.get(TEST_HOLD)
    return _Hold(spec) if spec else None
