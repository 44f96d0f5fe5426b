"""What a run may write, checked before anything is opened: never an input, never one file twice.

The rule, for both engines: every path edge-classify will write (--output and its .partial and
journal, --rejects and its .partial, --eval-json, the lock file) is compared with every input
and with each other after resolving, by real path and, where both exist, by device and inode
(so a symbolic link, a hard link or a `sub/../` spelling of the same file counts as the same
file). A clash is one line naming both and exit code 2, with nothing touched. stdout counts
too when it is a regular file (`>> reviews.txt` would read its own output forever). A written
path's missing folders are made (`-o results/today/scores.tsv`), once every check has passed.
"""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import NamedTuple

from review_classifier.edge.records import STDIN
from review_classifier.shared.errors import ClassifierError


class Written(NamedTuple):
    role: str     # how the user named it: "--output", "--rejects", "the --output's journal", ...
    path: Path


def output_files(flag: str, path: Path) -> list[Written]:
    """`path` and the files written beside it while it is being written (edge.resume)."""
    from review_classifier.edge.resume import journal_path, lock_path, partial_path

    files = [Written(flag, path), Written(f"{flag}'s .partial", partial_path(path))]
    if flag == "--output":
        files += [Written(f"{flag}'s journal", journal_path(path)), Written(f"{flag}'s lock file", lock_path(path))]
    return files


def check_paths(inputs: list[str], written: list[Written]) -> None:
    """Raise ClassifierError if a written path is an input, or two written paths are one file."""
    for w in written:
        check_writable(w.role, w.path)
    targets = [(f"{w.role} {w.path}", _identity(w.path)) for w in written]
    out = _stdout_identity()
    if out is not None:
        targets.append(("stdout", out))
    read = [(s, _identity(Path(s))) for s in inputs if s != STDIN]
    for name, ident in targets:
        for source, src in read:
            if _same(ident, src):
                raise ClassifierError(f"{name} is the same file as input {source}; refusing to overwrite "
                                      "an input (choose another path)")
    for i, (a, ia) in enumerate(targets):
        for b, ib in targets[i + 1:]:
            if _same(ia, ib):
                raise ClassifierError(f"{a} and {b} are the same file; choose different paths")


def check_writable(flag: str, path: Path) -> None:
    """A regular file or nothing yet, in a folder that exists or can be made: an existing folder,
    device or pipe is never replaced."""
    if path.is_symlink() and not path.exists():
        raise ClassifierError(f"{flag} {path} is a broken symbolic link; refusing to write through it")
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise ClassifierError(f"{flag} {path} exists and is {kind}; refusing to replace it (choose a file path)")
    for parent in path.absolute().parents:   # missing folders are made when the run writes
        if parent.exists():
            if not parent.is_dir():
                raise ClassifierError(f"cannot write {flag} {path}: {parent} is a file, not a folder")
            break


class _Identity(NamedTuple):
    real: str
    inode: tuple[int, int] | None


def _identity(path: Path) -> _Identity:
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
        inode = (st.st_dev, st.st_ino)
    except OSError:
        inode = None
    return _Identity(real, inode)


def _same(a: _Identity, b: _Identity) -> bool:
    return a.real == b.real or (a.inode is not None and a.inode == b.inode)


def _stdout_identity() -> _Identity | None:
    """stdout's file when it is a regular file (a pipe or terminal can never be an input file)."""
    try:
        st = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):   # no real stdout (tests capture it)
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return _Identity(f"<stdout {st.st_dev}:{st.st_ino}>", (st.st_dev, st.st_ino))
