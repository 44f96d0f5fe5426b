"""shared.bundle archive extraction refuses entries that escape the bundle (any Python 3.11)."""
from __future__ import annotations

import io
import tarfile

import pytest

from review_classifier.shared import bundle
from review_classifier.shared.errors import BundleError


def _archive(path, names):
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return path


@pytest.mark.parametrize("has_filter", [True, False])
def test_path_traversal_is_refused(tmp_path, monkeypatch, has_filter):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if not has_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    evil = _archive(tmp_path / "evil.tar.gz", ["manifest.json", "../escaped"])
    with pytest.raises(BundleError):
        bundle.load_bundle(evil)
    assert not (tmp_path / "cache" / "escaped").exists()
    assert not (tmp_path / "cache" / "review-classifier" / "escaped").exists()
