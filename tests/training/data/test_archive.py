"""data.archive: the IMDB archive downloaded (from a local server), checked, extracted and cached."""
from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from review_classifier.shared.errors import ClassifierError
from review_classifier.training.data.sources import load_reviews


def make_archive(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, text: str) -> None:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("aclImdb/README", "readme")
        add("aclImdb/imdb.vocab", "the\nmovie\n")
        add("aclImdb/train/pos/0_9.txt", "A joy.")
        add("aclImdb/train/pos/1_8.txt", "Lovely.")
        add("aclImdb/train/neg/0_2.txt", "Dreadful.")
        add("aclImdb/train/unsup/0_0.txt", "unlabelled")
        add("aclImdb/test/pos/0_10.txt", "Masterpiece.")
        add("aclImdb/test/neg/0_1.txt", "Terrible.")
    return path


@pytest.fixture()
def archive_server(tmp_path, monkeypatch):
    """Serve a small aclImdb-style archive on 127.0.0.1; yields (url, sha256, list of requests)."""
    served = tmp_path / "served"
    served.mkdir()
    archive = make_archive(served / "aclImdb_v1.tar.gz")
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/aclImdb_v1.tar.gz"
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setenv("IMDB_ARCHIVE_URL", url)
    monkeypatch.setenv("IMDB_ARCHIVE_SHA256", sha)
    try:
        yield url, sha, requests
    finally:
        server.shutdown()
        server.server_close()


def test_archive_download_extract_and_cache(archive_server, cfg):
    url, sha, requests = archive_server
    train = load_reviews("imdb-archive", cfg)
    assert sorted(zip(train.texts, train.labels)) == [("A joy.", 1), ("Dreadful.", 0), ("Lovely.", 1)]
    assert len(requests) == 1
    test = load_reviews("imdb-archive:test", cfg)
    assert sorted(zip(test.texts, test.labels)) == [("Masterpiece.", 1), ("Terrible.", 0)]
    assert len(requests) == 1  # the cache answered
    home = Path(cfg.cache_dir) / "imdb-archive" / sha[:16]
    assert hashlib.sha256((home / "aclImdb_v1.tar.gz").read_bytes()).hexdigest() == sha
    assert not (home / "aclImdb" / "train" / "unsup").exists()
    assert sorted(p.name for p in home.iterdir()) == ["aclImdb", "aclImdb_v1.tar.gz"]  # no temporaries left


def test_archive_wrong_sha256_is_refused_and_leaves_nothing(archive_server, cfg, monkeypatch):
    monkeypatch.setenv("IMDB_ARCHIVE_SHA256", "0" * 64)
    with pytest.raises(ClassifierError, match="sha256") as e:
        load_reviews("imdb-archive", cfg)
    assert archive_server[0] in str(e.value)
    assert [p for p in Path(cfg.cache_dir).rglob("*") if p.is_file()] == []


def test_archive_unreachable(cfg, monkeypatch):
    monkeypatch.setenv("IMDB_ARCHIVE_URL", "http://127.0.0.1:9/none.tar.gz")  # discard port: refused
    with pytest.raises(ClassifierError, match="cannot download http://127.0.0.1:9/none.tar.gz"):
        load_reviews("imdb-archive", cfg)
    assert [p for p in Path(cfg.cache_dir).rglob("*") if p.is_file()] == []
