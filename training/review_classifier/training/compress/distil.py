"""Knowledge distillation with plain PyTorch: a teacher's logits on the training split
(training.compress.teacher, computed once), then a student trained on them through
training.fit.run, reported against the teacher (training.compress.measure)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from review_classifier.shared.errors import ClassifierError
from review_classifier.training.compress.measure import model_stats, write_report
from review_classifier.training.compress.teacher import is_bundle, teacher_hash, write_teacher_logits
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.data.reviews import data_fingerprint
from review_classifier.training.data.splits import load_splits
from review_classifier.training.data.teacher_logits import load_teacher_logits
from review_classifier.training.data.tokenized import tokenize_splits
from review_classifier.training.fit.model import encoder_layers, load_model, load_tokenizer
from review_classifier.training.fit.run import run_training


def distill_model(cfg: TrainConfig, teacher, out_dir, student: str | None = None,
                  windows: int | None = None) -> dict:
    """Train a student on a teacher's logits; out_dir is its run folder, out_dir/best the student.

    `teacher`: a fine-tuned checkpoint folder or a model bundle of any architecture (its logits
    on the training split are computed once into out_dir/teacher_logits.npz), or such a .npz
    file itself. `student`: any model source (cfg.model's kinds), cut to cfg.distill_layers
    layers (0: all); none: the teacher checkpoint's first distill_layers (0: half) layers.
    Trains cfg.distill_epochs epochs through run_training, so the run is tested and resumable.
    """
    teacher, out_dir = Path(teacher), Path(out_dir)
    checkpoint = teacher.is_dir() and not is_bundle(teacher)
    if student is None and not checkpoint:
        raise ClassifierError(f"{teacher}: a bundle or a logits file teaches only a --student of your choice "
                              "(a model source: pkg:..., splitzip:..., a folder)")
    layers = cfg.distill_layers
    if student is None and not layers:
        layers = max(1, _layer_count(teacher) // 2)
    splits = load_splits(cfg)
    logits_file = teacher if teacher.suffix == ".npz" else ensure_teacher_logits(cfg, teacher, splits, out_dir, windows)
    scfg = dataclasses.replace(cfg, model=student or str(teacher), distill_layers=layers,
                               teacher_logits=str(logits_file), epochs=max(1, cfg.distill_epochs),
                               output_dir=str(out_dir), freeze_epochs=0)
    results = run_training(scfg)
    best_dir = Path(results["best_dir"])
    before = None
    if checkpoint:
        tokenizer = load_tokenizer(cfg, str(teacher))
        teacher_model = load_model(dataclasses.replace(cfg, distill_layers=0), str(teacher))
        valid = tokenize_splits(splits, tokenizer, cfg)["valid"]
        before = model_stats(teacher_model, teacher, cfg, valid, tokenizer.pad_token_id or 0)
    tokenizer = load_tokenizer(scfg, str(best_dir))
    best = load_model(scfg, str(best_dir))
    after = model_stats(best, best_dir, scfg, tokenize_splits(splits, tokenizer, scfg)["valid"],
                        tokenizer.pad_token_id or 0)
    report = {
        "method": "distillation", "tool": "PyTorch KD loss (temperature-scaled KL + class-weighted hard loss)",
        "teacher_layers": _layer_count(teacher) if checkpoint else None,
        "student_layers": len(encoder_layers(best)), "student_model": scfg.model,
        "temperature": cfg.distill_temperature, "alpha": cfg.distill_alpha, "epochs": scfg.epochs,
        "teacher_model": str(teacher), "teacher": results.get("teacher"), "model_dir": str(best_dir),
        "baseline": before, "compressed": after, "history": results["history"], "test": results["test"],
    }
    if before:
        report["speedup"] = round(after["reviews_per_s"] / max(before["reviews_per_s"], 1e-9), 2)
        report["size_ratio"] = round(after["parameters"] / max(before["parameters"], 1), 3)
    write_report(best_dir, report)
    return report


def ensure_teacher_logits(cfg: TrainConfig, teacher: Path, splits, out_dir: Path, windows: int | None) -> Path:
    """out_dir/teacher_logits.npz for this teacher and training split: computed once, reused
    by a rerun (a resume) while teacher and data are the same."""
    path = out_dir / "teacher_logits.npz"
    if path.is_file():
        prov = load_teacher_logits(path).provenance
        if prov["teacher"]["sha256"] == teacher_hash(teacher) \
                and prov["data"]["fingerprint"] == data_fingerprint({"train": splits["train"]}) \
                and (windows is None or prov["text_policy"].get("windows") == windows):
            return path
    write_teacher_logits(path, teacher, splits["train"], cfg, windows)
    return path


def _layer_count(checkpoint: Path) -> int:
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    return int(config.get("n_layers") or config["num_hidden_layers"])
