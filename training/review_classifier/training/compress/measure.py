"""What every compression reports: a model's accuracy, size and speed on the validation split,
and the compression.json written next to the compressed model (training.bundle.build records
it in the bundle manifest)."""
from __future__ import annotations

import dataclasses
import gzip
import json
import time
from pathlib import Path

import torch

from review_classifier.shared.atomic import atomic_write_text
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.fit.evaluation import evaluate_split

from review_classifier.training.bundle.build import COMPRESSION_FILE
SPEED_SAMPLES = 256


def model_stats(model, model_dir: Path | None, cfg: TrainConfig, valid, pad_id: int) -> dict:
    """Validation accuracy/macro F1, parameter counts, file size and PyTorch reviews/s."""
    model.eval()
    device = next(model.parameters()).device
    metrics = evaluate_split(model, valid, cfg, device, pad_id, "valid")
    sample = valid.select(range(min(SPEED_SAMPLES, len(valid))))
    with torch.inference_mode():
        evaluate_split(model, sample, cfg, device, pad_id, "warm-up")
        t = time.perf_counter()
        evaluate_split(model, sample, cfg, device, pad_id, "speed")
        seconds = time.perf_counter() - t
    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    stats = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "parameters": params,
             "nonzero_parameters": nonzero, "reviews_per_s": round(len(sample) / max(seconds, 1e-9), 2)}
    if model_dir is not None:
        weights = sorted(Path(model_dir).glob("*.safetensors")) or sorted(Path(model_dir).glob("*.bin"))
        stats["file_bytes"] = sum(w.stat().st_size for w in weights)
        stats["gzip_bytes"] = sum(len(gzip.compress(w.read_bytes(), 6)) for w in weights)
    return stats


def fine_tune_cfg(cfg: TrainConfig, epochs: int, out_dir: Path) -> TrainConfig:
    return dataclasses.replace(cfg, epochs=max(1, epochs), output_dir=str(out_dir), freeze_epochs=0)


def write_report(best_dir: Path, report: dict) -> None:
    atomic_write_text(Path(best_dir) / COMPRESSION_FILE, json.dumps(report, indent=2, sort_keys=True) + "\n")
