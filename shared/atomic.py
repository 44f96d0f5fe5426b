"""Write files and folders so that readers see all of them or nothing."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds.

    Works for a file or a folder written at the yielded path. On any exception (including
    KeyboardInterrupt) the temporary is removed and `path` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    target = tmp / final.name
    try:
        yield target
        _default_permissions(target)
        if final.is_dir() and not final.is_symlink():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(target, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recover_interrupted(path: str | os.PathLike) -> bool:
    """Undo what a process killed inside `atomic_path(path)` left: its temporary folders, and
    (killed between moving the old folder aside and the new one in) `path` missing with its
    previous version at `.<name>.old`, which is put back. Call it only where no other process
    may be writing `path`. Returns whether a previous version was put back."""
    final = Path(path)
    for tmp in final.parent.glob(f".{final.name}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    old = final.with_name(f".{final.name}.old")
    if old.is_dir() and not final.exists():
        os.replace(old, final)
        return True
    shutil.rmtree(old, ignore_errors=True)
    return False


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _default_permissions(path: Path) -> None:
    """Give what was written the modes a plain open() would (some writers, like safetensors,
    create files owner-only), so results in a shared or mounted folder stay readable."""
    umask = os.umask(0)
    os.umask(umask)
    if not path.exists() or path.is_symlink():
        return
    paths = [path] + (sorted(path.rglob("*")) if path.is_dir() else [])
    for p in paths:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)
