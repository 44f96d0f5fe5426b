"""The official IMDB archive: download once (verified), extract once, reuse from the cache.

A download goes to a temporary file beside its final place and is renamed only after its
sha256 matched, so the cache never holds half a file or a wrong one. IMDB_ARCHIVE_URL and
IMDB_ARCHIVE_SHA256 override the source (a mirror, or a loopback server in tests).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from review_classifier.shared.atomic import atomic_path
from review_classifier.shared.bundle import sha256_file
from review_classifier.shared.errors import ClassifierError

IMDB_ARCHIVE_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_ARCHIVE_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
# Only the labelled reviews are extracted (50k small files), not the 50k unlabelled ones.
_LABELLED = re.compile(r"^aclImdb/(train|test)/(pos|neg)/[^/]+\.txt$")
_CHUNK = 1 << 20


def archive_source() -> tuple[str, str]:
    """(url, sha256) of the IMDB archive, from the environment or the official values."""
    url = os.environ.get("IMDB_ARCHIVE_URL") or IMDB_ARCHIVE_URL
    sha = (os.environ.get("IMDB_ARCHIVE_SHA256") or IMDB_ARCHIVE_SHA256).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ClassifierError(f"IMDB_ARCHIVE_SHA256 must be 64 hex digits, got {sha!r}")
    return url, sha


def download(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Fetch `url` to `dest` with a progress bar; keep it only if its sha256 matches."""
    try:
        with atomic_path(dest) as tmp:
            h = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=dest.name, file=sys.stderr, disable=not sys.stderr.isatty()) as bar:
                    for block in iter(lambda: resp.read(_CHUNK), b""):
                        out.write(block)
                        h.update(block)
                        bar.update(len(block))
            if h.hexdigest() != sha256:
                raise ClassifierError(
                    f"download of {url} has sha256 {h.hexdigest()}, expected {sha256}: the file is "
                    "truncated or not the expected one; nothing was kept, try again or check IMDB_ARCHIVE_URL")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise ClassifierError(
            f"cannot download {url}: {reason}; check the network, set IMDB_ARCHIVE_URL to a mirror, "
            f"or put the archive at {dest} yourself") from None
    return dest


def imdb_archive_dir(cache_dir: Path) -> Path:
    """The extracted `aclImdb/` folder (labelled reviews only), downloading it if needed."""
    url, sha = archive_source()
    home = Path(cache_dir) / "imdb-archive" / sha[:16]
    root = home / "aclImdb"
    if root.is_dir():
        return root
    archive = home / "aclImdb_v1.tar.gz"
    if archive.is_file() and sha256_file(archive) != sha:
        archive.unlink()  # a file someone put there by hand that is not the expected archive
    if not archive.is_file():
        download(url, archive, sha)
    print(f"extracting {archive} ...", file=sys.stderr)
    try:
        with atomic_path(root) as tmp, tarfile.open(archive, "r:gz") as tar:
            n = 0
            for member in tar:  # one streaming pass over the gzip
                if member.isfile() and _LABELLED.match(member.name):
                    tar.extract(member, tmp.parent / "x", filter="data")
                    n += 1
            if not n:
                raise ClassifierError(f"{archive} holds no aclImdb/{{train,test}}/{{pos,neg}}/*.txt files; "
                                      "is it the IMDB archive? delete it and try again")
            shutil.move(str(tmp.parent / "x" / "aclImdb"), tmp)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ClassifierError(f"cannot extract {archive}: {e}; delete it and try again") from None
    return root
