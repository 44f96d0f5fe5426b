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
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.bundle import MANIFEST, sha256_file
from review_classifier.shared.errors import ClassifierError

JOURNAL_VERSION = 1
CHECKPOINT_SECONDS = 5.0
# records between checkpoints at most (also a test hook: EDGE_CLASSIFY_CHECKPOINT_RECORDS)
CHECKPOINT_RECORDS = int(os.environ.get("EDGE_CLASSIFY_CHECKPOINT_RECORDS", 50_000))


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial.json")


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
        self._f = open(path, mode)
        if offset:
            if path.stat().st_size < offset:
                raise ClassifierError(f"--resume: {path} is shorter than its journal says "
                                      "(changed by something else); rerun without --resume")
            self._f.truncate(offset)
            self._f.seek(offset)

    def write(self, text: str) -> None:
        self._f.write(text.encode("utf-8"))

    def sync(self) -> int:
        self._f.flush()
        os.fsync(self._f.fileno())
        return self._f.tell()

    def close(self) -> None:
        self._f.close()


class ResumableOutput:
    """The output (and optional rejects) file of one run, with its journal; see the module docstring."""

    def __init__(self, output: Path, rejects: Path | None, identity: dict, resume: bool, say):
        self.output, self.rejects, self.identity, self.say = output, rejects, identity, say
        self.counters: dict = {"records": 0}   # the run's summary so far (classify.Summary.counters)
        self.done = False
        offsets = {"output": 0, "rejects": 0}
        journal = _read_journal(journal_path(output))
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
        elif resume:
            if output.exists():
                self.done = True
                say(f"--resume: {output} is complete (no unfinished run); nothing to do")
                return
            say(f"--resume: no unfinished run of {output}; starting from the beginning")
        self.fresh = offsets["output"] == 0   # nothing written yet: a CSV header is still due
        self._out = _Sink(partial_path(output), offsets["output"])
        self._rej = _Sink(partial_path(rejects), offsets["rejects"]) if rejects else None
        self._last_time, self._last_records = time.monotonic(), self.counters["records"]
        if journal is None or not resume:
            self._journal()   # a kill before the first checkpoint leaves a journal of 0 records

    def write(self, text: str) -> None:
        self._out.write(text)

    def reject(self, line: str) -> None:
        self._rej.write(line)

    def maybe_checkpoint(self, counters: dict) -> None:
        """Called at every point where the run could restart identically."""
        self.counters = counters
        if (counters["records"] - self._last_records >= CHECKPOINT_RECORDS
                or time.monotonic() - self._last_time >= CHECKPOINT_SECONDS):
            self._journal()

    def _journal(self) -> None:
        offsets = {"output": self._out.sync(), "rejects": self._rej.sync() if self._rej else 0}
        atomic_write_text(journal_path(self.output), json.dumps({
            "identity": self.identity, "offsets": offsets, "counters": self.counters}, indent=1) + "\n")
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
