"""Which bundle `edge-classify` and `edge.load()` score with, when none is named.

In order: --model / the `bundle` argument, $EDGE_CLASSIFY_MODEL, a bundle installed on purpose
with `train-classify pipeline --install`, and otherwise the trained default that ships inside this
package (edge/default_model/), checked against the sha256 pinned here before it is used.
"""
from __future__ import annotations

import os
from pathlib import Path

from review_classifier.shared.bundle import MANIFEST, installed_bundle_dir, sha256_file
from review_classifier.shared.errors import BundleError

SHIPPED_DIR = Path(__file__).resolve().parent / "default_model"
# sha256 of the shipped bundle's manifest.json, which holds the sha256 of every other file in it
# (model.onnx, tokenizer.json, README.md): this one pin covers the whole bundle.
SHIPPED_MANIFEST_SHA256 = "8b8aa5236a6156fc3317846a79819977f066a167fdfd915ee617ab164e6f1687"
ENV = "EDGE_CLASSIFY_MODEL"


def shipped_bundle() -> Path:
    """The trained default bundle inside this package, refused if it differs from the pinned one."""
    manifest = SHIPPED_DIR / MANIFEST
    if not manifest.is_file():
        raise BundleError(f"the shipped default model is missing ({manifest}); reinstall review-classifier "
                          "or pass --model PATH")
    if sha256_file(manifest) != SHIPPED_MANIFEST_SHA256:
        raise BundleError(f"the shipped default model at {SHIPPED_DIR} does not match the sha256 pinned in "
                          "edge/locate.py; reinstall review-classifier or pass --model PATH")
    return SHIPPED_DIR


def locate_bundle(model: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(bundle path, where it came from) for an explicit path or the defaults above."""
    if model:
        return Path(model), "given"
    env = os.environ.get(ENV)
    if env:
        return Path(env), f"${ENV}"
    installed = installed_bundle_dir()
    if (installed / MANIFEST).is_file():
        return installed, "installed with train-classify pipeline --install"
    return shipped_bundle(), "shipped default"
