"""The model bundle: an ONNX model, its tokenizer and a manifest that pins everything else.

Layout of a bundle folder:
    manifest.json   this module's `Manifest`, with the sha256 of every other file
    model.onnx      the classifier (int8 or fp32), inputs named in `input_names`
    tokenizer.json  a `tokenizers` tokenizer (padding/truncation are applied in code)
    README.md       the model card (schema 2; training.bundle.model_card writes it)
A bundle may also travel as one `.tar.gz` holding that folder's files.
"""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from review_classifier.shared.cache import cache_root
from review_classifier.shared.atomic import atomic_path, atomic_write_text
from review_classifier.shared.errors import BundleError
from review_classifier.shared.text import TextPolicy

# 2: `calibration` (a temperature the runtime must apply) and the model card. A schema-1 bundle
# reads as one with neither.
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
CARD_FILE = "README.md"
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
# onnxruntime graph rewrites every session that scores a bundle turns off (training's checks and
# the edge runtime alike, so both run the same graph). SkipLayerNormalization's CPU kernel took
# 500 us on a 256 x 384 input where Add + Add + LayerNormalization took 92 (onnxruntime 1.32, one
# thread): the export leaves those nodes unfused and this keeps onnxruntime from fusing them back.
ORT_DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


@dataclass
class Manifest:
    labels: list[str]
    text_policy: dict[str, Any]
    prefix_ids: list[int]          # special tokens before the text, e.g. [CLS]
    suffix_ids: list[int]          # special tokens after the text, e.g. [SEP]
    pad_id: int
    input_names: list[str]         # exactly the inputs the ONNX graph declares
    precision: str                 # "fp32" or "int8"
    base_model: str = ""
    config_hash: str = ""
    data_fingerprint: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)   # {"fp32": {...}, "int8": {...}}
    compression: dict[str, Any] = field(default_factory=dict)
    # {"temperature": T, ...}: probabilities are softmax(logits / T); shared.calibration's report
    calibration: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # the recipe's main settings (model card)
    # the training data's layout, so that scoring and --eval read files as training did:
    # {"text_column": ..., "label_column": ..., "label_aliases": {raw value: label}}
    data: dict[str, Any] = field(default_factory=dict)
    model_file: str = MODEL_FILE
    tokenizer_file: str = TOKENIZER_FILE
    files: dict[str, str] = field(default_factory=dict)      # relative path -> sha256
    schema_version: int = SCHEMA_VERSION
    package_version: str = ""
    created_at: str = ""

    @property
    def quantization(self) -> dict[str, Any]:
        """The INT8 quantization report (approach, chosen candidate, trials, ...); {} otherwise."""
        return (self.compression or {}).get("quantization") or {}

    @property
    def quant_approach(self) -> str | None:
        """"dynamic" or "static" for an INT8 bundle, None otherwise."""
        return self.quantization.get("approach")

    @property
    def temperature(self) -> float:
        return float((self.calibration or {}).get("temperature") or 1.0)

    @property
    def base_model_name(self) -> str:
        """The model this bundle was fine-tuned from, as its recipe named it (`model`): what --info,
        --eval reports and the model card all show. `base_model` can hold only the checkpoint
        folder's name (`best`) in bundles exported from a run's checkpoint."""
        return str((self.training or {}).get("model") or self.base_model or "")

    @property
    def policy(self) -> TextPolicy:
        return TextPolicy.from_dict(self.text_policy)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("review-classifier")
    except PackageNotFoundError:
        return "0+unknown"


def seal_bundle(folder: str | os.PathLike, manifest: Manifest, resealed: bool = False) -> Manifest:
    """Fill checksums, version and time into `manifest` and write it into `folder`. `resealed`: a
    finished bundle whose card or figures changed keeps its creation time (its model did not change)."""
    folder = Path(folder)
    manifest.files = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    for needed in (manifest.model_file, manifest.tokenizer_file):
        if needed not in manifest.files:
            raise BundleError(f"cannot seal bundle {folder}: {needed} is missing")
    manifest.schema_version = SCHEMA_VERSION
    manifest.package_version = package_version()
    if not (resealed and manifest.created_at):
        manifest.created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_text(folder / MANIFEST, manifest.to_json())
    return manifest


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    if not path.is_file():
        raise BundleError(f"{folder} is not a model bundle: {MANIFEST} is missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} is corrupt: {e}") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{path} is corrupt: expected a JSON object")
    version = raw.get("schema_version")
    if not isinstance(version, int):
        raise BundleError(f"{path} has no schema_version; not a bundle from this project")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"{folder} uses bundle schema {version}, newer than this runtime's {SCHEMA_VERSION}; "
            "upgrade review-classifier")
    if version not in READABLE_SCHEMAS:
        raise BundleError(f"{folder} uses old bundle schema {version}; re-export it with this version")
    try:
        manifest = Manifest(**{k: raw[k] for k in raw if k in Manifest.__dataclass_fields__})
    except TypeError as e:
        raise BundleError(f"{path} is incomplete: {e}") from None
    t = (manifest.calibration or {}).get("temperature", 1.0) if isinstance(manifest.calibration, dict) else None
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0.01 <= t <= 100:
        raise BundleError(f"{path} has an invalid calibration temperature: {t!r}")
    return manifest


def verify_bundle(folder: Path, manifest: Manifest) -> None:
    """Refuse a bundle whose files are missing, extra-truncated or changed since sealing."""
    for needed in (manifest.model_file, manifest.tokenizer_file):
        if needed not in manifest.files:
            raise BundleError(f"{folder}/{MANIFEST} lists no checksum for {needed}")
    for rel, digest in manifest.files.items():
        path = folder / rel
        if not path.is_file():
            raise BundleError(f"bundle {folder} is incomplete: {rel} is missing")
        if sha256_file(path) != digest:
            raise BundleError(f"bundle {folder} is corrupt or tampered: checksum of {rel} does not match")


def load_bundle(path: str | os.PathLike) -> tuple[Manifest, Path]:
    """Open a bundle folder or .tar.gz, check schema and checksums; return (manifest, folder)."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"model bundle not found: {path}")
    folder = _unpack(path) if path.is_file() else path
    manifest = read_manifest(folder)
    verify_bundle(folder, manifest)
    return manifest, folder


def pack_bundle(folder: str | os.PathLike, archive: str | os.PathLike) -> Path:
    """Write the bundle folder as one .tar.gz (atomically)."""
    folder, archive = Path(folder), Path(archive)
    with atomic_path(archive) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    tar.add(p, arcname=p.relative_to(folder).as_posix())
    return archive


def _unpack(archive: Path) -> Path:
    """Extract a bundle archive into a cache folder keyed by its checksum (reused later)."""
    digest = sha256_file(archive)[:16]
    cache = cache_root() / digest
    if (cache / MANIFEST).is_file():
        return cache
    try:
        with atomic_path(cache) as tmp, tarfile.open(archive, "r:gz") as tar:
            tmp.mkdir()
            _safe_extract(tar, tmp, archive)
            _check_members(tar, read_manifest(tmp), archive)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BundleError(f"cannot read bundle archive {archive}: {e}") from None
    return cache


def _check_members(tar: tarfile.TarFile, manifest: Manifest, archive: Path) -> None:
    """An archive holds the files its manifest seals (and their folders), nothing else: a member
    beyond them (an absolute path, which extraction re-roots, or any stray file) is refused."""
    sealed = {MANIFEST, *manifest.files}
    folders = {parent.as_posix() for name in sealed for parent in PurePosixPath(name).parents} - {"."}
    for member in tar.getmembers():
        name = member.name[2:] if member.name.startswith("./") else member.name
        if member.isfile() and name in sealed or member.isdir() and name.rstrip("/") in folders:
            continue
        raise BundleError(f"bundle archive {archive} holds {member.name!r}, which its manifest does not list; "
                          "refusing it")


def _safe_extract(tar: tarfile.TarFile, dest: Path, archive: Path) -> None:
    """Extract only plain files and folders that stay inside `dest` (Python < 3.11.4 lacks
    tarfile's "data" filter)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in tar.getmembers():
        target = (dest / member.name).resolve()
        if not (member.isfile() or member.isdir()) or root not in (target, *target.parents):
            raise BundleError(f"bundle archive {archive} holds an unsafe entry: {member.name}")
    tar.extractall(dest)


def installed_bundle_dir() -> Path:
    """Where `train-classify pipeline --install` puts a bundle of the user's own; edge-classify
    prefers it to the shipped default (edge.locate)."""
    data = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return data / "review-classifier" / "bundle"


def default_bundle_dir() -> Path:
    """Where `--install` writes: $EDGE_CLASSIFY_MODEL if set, else installed_bundle_dir()."""
    env = os.environ.get("EDGE_CLASSIFY_MODEL")
    return Path(env) if env else installed_bundle_dir()
