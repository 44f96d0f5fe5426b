"""The training job end to end, as functions a notebook can call (`train-classify` is a thin
layer over them): train and bundle (`run_pipeline`), bundle an existing checkpoint
(`export_checkpoint`), and put a bundle where edge-classify looks by default.

    from review_classifier.training.config.settings import load_config
    from review_classifier.training.pipeline import run_pipeline
    done = run_pipeline(load_config("tiny"))
    done.bundles["int8"]          # the verified INT8 bundle folder
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from review_classifier.edge.locate import locate_bundle
from review_classifier.shared.atomic import atomic_path
from review_classifier.shared.bundle import default_bundle_dir
from review_classifier.shared.errors import ClassifierError
from review_classifier.training.bundle.build import BundleInputs, build_bundles
from review_classifier.training.config.settings import TrainConfig, run_folder_of
from review_classifier.training.data.reviews import data_fingerprint
from review_classifier.training.data.splits import calib_and_valid, load_splits, reduce_reviews
from review_classifier.training.fit.device import dist_info
from review_classifier.training.fit.run import run_training

PRECISIONS = ("fp32", "int8")


@dataclass
class PipelineResult:
    results: dict                                   # run_training's results (test metrics, best_dir, ...)
    bundles: dict[str, Path] = field(default_factory=dict)   # "int8", "fp32", "<precision>_archive"
    installed: Path | None = None                   # where install=True put the int8 bundle


def run_pipeline(cfg: TrainConfig, out: str | Path | None = None, archive: bool = False, install: bool = False,
                 restart: bool = False) -> PipelineResult | None:
    """Train (resuming cfg.output_dir's checkpoint unless `restart`), evaluate, then write the
    verified fp32 and INT8 bundles to `out` (default <output_dir>/bundles); None on the DDP
    ranks other than 0, which only train."""
    results = run_training(cfg, restart=restart)
    if dist_info()[0] != 0:
        return None
    splits = load_splits(cfg)
    calib = reduce_reviews(splits["train"], min(1.0, cfg.calib_samples / max(len(splits["train"]), 1)), cfg.seed)
    dest = Path(out) if out else Path(cfg.output_dir) / "bundles"
    bundles = build_bundles(BundleInputs(Path(results["best_dir"]), cfg, valid=splits["valid"], calib=calib,
                                         data_fingerprint=data_fingerprint(splits), fp32_metrics=results["test"]),
                            dest, archive=archive)
    done = PipelineResult(results, bundles)
    if install:
        done.installed = install_bundle(bundles["int8"])
    return done


def export_checkpoint(model_dir: str | Path, out: str | Path, cfg: TrainConfig, data: str = "",
                      precisions: tuple[str, ...] = PRECISIONS, archive: bool = False) -> dict[str, Path]:
    """Bundles of an existing checkpoint: calibrated and verified on `data` split in two halves,
    else on the config's data (then the run's PyTorch test metrics go into the manifest too)."""
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise ClassifierError(f"--precision must be int8, fp32 or both, got {','.join(precisions)!r}")
    calib, valid, fingerprint = calib_and_valid(cfg, data)
    run = run_folder_of(model_dir) if not data else None
    results = json.loads((run / "results.json").read_text()) if run and (run / "results.json").is_file() else {}
    inputs = BundleInputs(Path(model_dir), cfg, valid=valid, calib=calib, data_fingerprint=fingerprint,
                          fp32_metrics=results.get("test"))
    return build_bundles(inputs, Path(out), archive=archive, precisions=precisions)


def install_bundle(bundle: Path) -> Path:
    """Copy a bundle to where edge-classify looks by default (atomically); returns that folder."""
    target = default_bundle_dir()
    with atomic_path(target) as tmp:
        shutil.copytree(bundle, tmp)
    return target


def which_model_note(built: Path | None) -> str:
    """What `edge-classify` scores with after this run, and how to switch."""
    try:
        path, source = locate_bundle()
        now = f"edge-classify uses {path} ({source})"
    except ClassifierError as e:
        now = f"edge-classify has no default model: {e}"
    switch = f"; to score with this run's bundle: edge-classify --model {built} (or export EDGE_CLASSIFY_MODEL={built})" \
        if built else ""
    return now + switch
