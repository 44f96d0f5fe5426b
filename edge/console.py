"""The command's two streams: `say` (one line on stderr, prefixed with the program's name) and
STDOUT (records and reports on stdout; a failed write is one line, not a traceback)."""
from __future__ import annotations

import contextlib
import sys

from review_classifier.edge.resume import WriteError, write_error

PROG = "edge-classify"


class StdoutError(WriteError):
    """stdout could not be written (`> /dev/full`, a full disk)."""


class Stdout:
    """sys.stdout for the records and the --eval report: a failed write is one line, not a
    traceback (a reader that went away stays BrokenPipeError, which `run` treats as the end)."""

    def write(self, text: str) -> None:
        with _stdout_errors():
            sys.stdout.write(text)

    def flush(self) -> None:
        with _stdout_errors():
            sys.stdout.flush()


@contextlib.contextmanager
def _stdout_errors():
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        raise StdoutError(str(write_error("stdout", e))) from None


STDOUT = Stdout()


def say(message: str) -> None:
    try:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    except (BrokenPipeError, OSError):
        pass
