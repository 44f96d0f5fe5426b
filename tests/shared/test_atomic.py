"""shared.atomic: all or nothing, with ordinary file modes."""
from __future__ import annotations

import os
import stat

import pytest

from review_classifier.shared.atomic import atomic_path, atomic_write_text


def test_file_is_replaced_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_folder_is_swapped_whole(tmp_path):
    target = tmp_path / "bundle"
    for text in ("one", "two"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "f").write_text(text)
    assert (target / "f").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_owner_only_files_get_the_umask_modes(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "ckpt") as tmp:
            tmp.mkdir()
            (tmp / "weights").write_bytes(b"x")
            os.chmod(tmp / "weights", 0o600)            # as safetensors.save_file leaves it
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ckpt" / "weights").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "ckpt").stat().st_mode) == 0o755
