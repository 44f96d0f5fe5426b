"""`run_training`: data -> tokenise -> fit (manual loop or Trainer) -> test evaluation -> results.

Every artefact of a run lands in cfg.output_dir: config.json, dataset_report.json,
history.json, best/ (model + tokenizer), last/ (resumable checkpoint), tb/, results.json,
confusion.json, confusion.png, curves.png. results.json's test_slices holds the test accuracy by token
length and truncation (shared.slices).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.bundle import sha256_file
from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.logits import softmax
from review_classifier.shared.metrics import classification_report, format_confusion
from review_classifier.shared.provenance import provenance
from review_classifier.shared.slices import format_slices, slice_report
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.data.report import dataset_report, format_report
from review_classifier.training.data.reviews import data_fingerprint
from review_classifier.training.data.splits import load_splits
from review_classifier.training.data.teacher_logits import load_teacher_logits
from review_classifier.training.data.tokenized import tokenize_splits
from review_classifier.training.fit.device import dist_info, log_rank0, seed_everything, setup_device
from review_classifier.training.fit.evaluation import predict
from review_classifier.training.fit.loop import fit
from review_classifier.training.fit.model import load_model, load_tokenizer
from review_classifier.training.fit.plots import plot_confusion, plot_curves, step_scalars

log = log_rank0


def run_training(cfg: TrainConfig, restart: bool = False) -> dict:
    """Train and test one model as configured; returns the results dict (also in results.json).

    A checkpoint in output_dir/last is resumed only if it belongs to this run (`check_resume`);
    `restart` discards it instead."""
    out = Path(cfg.output_dir)
    rank = dist_info()[0]
    device = setup_device()
    log(f"device: {device}" + ("" if device.type == "cuda" else " (no GPU found: running on the CPU)"))
    splits = load_splits(cfg)
    fingerprint = data_fingerprint(splits)
    if rank == 0:
        check_resume(cfg, out, fingerprint, restart)
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.json")
        log("config: " + json.dumps(cfg.to_dict(), sort_keys=True))
    if dist_info()[1] > 1:
        dist.barrier()   # every rank sees last/ as rank 0 left it
    tokenizer = load_tokenizer(cfg)
    tokenized = tokenize_splits(splits, tokenizer, cfg)
    teacher = attach_teacher_logits(cfg, splits, tokenized)
    report = dataset_report(splits, tokenized, cfg)
    if rank == 0:
        log(format_report(report))
        atomic_write_text(out / "dataset_report.json", json.dumps(report, indent=2))

    seed_everything(cfg.seed)   # a new classification head is drawn here: the same seed, the same run
    model = load_model(cfg)
    if cfg.engine == "trainer":
        # lazy: the Trainer stack (5.9 s), for engine=trainer only
        from review_classifier.training.fit.trainer_engine import fit_with_trainer

        result = fit_with_trainer(cfg, model, tokenized, out, tokenizer=tokenizer, log=log)
    else:
        result = fit(cfg, model, tokenized, out, tokenizer=tokenizer, log=log)
    if rank != 0:
        return {}

    best = load_model(cfg, path=str(result.best_dir)).to(device)
    logits, labels = predict(best, tokenized["test"], cfg, device, tokenizer.pad_token_id or 0, "test")
    preds = logits.argmax(-1)
    test = classification_report(labels.tolist(), preds.tolist(), cfg.labels)   # accuracy, macro F1, per class
    log(f"test: accuracy {test['accuracy']:.4f}  macro F1 {test['macro_f1']:.4f}  (n={len(labels)})")
    log(format_confusion(test["confusion_matrix"], cfg.labels))
    slices = split_slices(tokenized["test"]["full_length"], labels, preds, cfg)
    log(format_slices(slices))
    log(sample_predictions(splits["test"].texts, labels, logits, cfg))

    results = {
        "config_hash": cfg.config_hash(), "data_fingerprint": fingerprint, "engine": cfg.engine,
        "model": cfg.model, "dataset": {k: report[k] for k in report if k != "examples"},
        "history": result.history, "best_valid": result.best_metrics, "test": test, "test_slices": slices,
        "precision": result.precision, "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
        "train_seconds": round(result.train_seconds, 1), "train_samples_per_s": round(result.samples_per_second, 2),
        "best_dir": str(result.best_dir), "teacher": teacher,
        "provenance": provenance({"train": cfg.data, "test": cfg.test_data or f"split of {cfg.data}"},
                                 cuda=_cuda_name()),
    }
    atomic_write_text(out / "confusion.json", json.dumps(
        {"labels": cfg.labels, "matrix": test["confusion_matrix"]}, indent=2))
    plot_confusion(test["confusion_matrix"], cfg.labels, out / "confusion.png", "test confusion matrix")
    if result.history:
        plot_curves(result.history, out / "curves.png", step_scalars(out / "tb"))
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=float))
    return results


def split_slices(full_lengths, labels: np.ndarray, preds: np.ndarray, cfg: TrainConfig) -> dict:
    """Accuracy by token length and by truncation on the test split (the run's test figures
    read one input per text, cut to max_length)."""
    full = [int(n) for n in full_lengths]
    return slice_report(labels.tolist(), preds.tolist(), cfg.labels, tokens=full,
                        truncated=[n > cfg.max_length for n in full], max_length=cfg.max_length)


def attach_teacher_logits(cfg: TrainConfig, splits, tokenized) -> dict | None:
    """With cfg.teacher_logits: add the teacher's logits to the train split as soft targets
    (training.fit.loop distils on them); returns the file's provenance, with its sha256."""
    if not cfg.teacher_logits:
        return None
    if cfg.engine != "manual":
        raise ClassifierError("teacher_logits: distillation trains with engine=manual, not the Trainer")
    teacher = load_teacher_logits(cfg.teacher_logits)
    soft = teacher.for_reviews(splits["train"], cfg.labels, cfg.teacher_logits)
    tokenized["train"] = tokenized["train"].add_column("teacher_logits", soft.tolist())
    prov = teacher.provenance
    log(f"distilling: soft targets from {cfg.teacher_logits} (teacher {prov.get('teacher', {}).get('path', '?')}, "
        f"T={cfg.distill_temperature}, alpha={cfg.distill_alpha})")
    return {"file": cfg.teacher_logits, "sha256": sha256_file(cfg.teacher_logits),
            **{k: prov.get(k) for k in ("teacher", "data", "text_policy", "teacher_train_accuracy")}}


def check_resume(cfg: TrainConfig, out: Path, fingerprint: str, restart: bool) -> None:
    """Refuse to go on from out/last with another config or other data; `restart` removes it."""
    last = out / "last"   # the manual loop's checkpoint; the Trainer's are trainer/checkpoint-*
    trainer_checkpoints = sorted((out / "trainer").glob("checkpoint-*")) if (out / "trainer").is_dir() else []
    if not (last / "state.json").is_file() and not trainer_checkpoints:
        return
    if not (last / "state.json").is_file():
        last = trainer_checkpoints[-1]
    if restart:
        log(f"--restart: discarding the checkpoints in {out}")
        shutil.rmtree(out / "last", ignore_errors=True)
        shutil.rmtree(out / "trainer", ignore_errors=True)
        (out / "history.json").unlink(missing_ok=True)
        return
    hint = "use a new output_dir, or --restart to discard it"
    try:
        saved = json.loads((out / "config.json").read_text())
        saved_fingerprint = json.loads((out / "dataset_report.json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        raise ClassifierError(f"{last} has no readable config.json/dataset_report.json beside it, so it cannot "
                              f"be checked against this run; {hint}") from None
    conflicts = cfg.resume_conflicts(saved)
    if conflicts:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(cfg, k, None)!r}" for k in conflicts[:4])
        raise ClassifierError(f"{last} is a checkpoint of another run ({shown}{', ...' if len(conflicts) > 4 else ''}); "
                              f"{hint} (epochs, max_steps, patience and export settings may change on resume)")
    if saved_fingerprint != fingerprint:
        raise ClassifierError(f"{last} was trained on other data (fingerprint {saved_fingerprint} -> {fingerprint}); {hint}")


def _cuda_name() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def sample_predictions(texts: list[str], labels: np.ndarray, logits: np.ndarray, cfg: TrainConfig) -> str:
    """A few test reviews with the prediction, as the original script printed them."""
    if not cfg.sample_predictions:
        return ""
    probs = softmax(logits)
    pick = np.random.default_rng(cfg.seed).permutation(len(texts))[:cfg.sample_predictions]
    lines = ["sample predictions:"]
    for i in pick:
        p = int(probs[i].argmax())
        mark = "ok " if p == labels[i] else "MISS"
        text = " ".join(texts[i].split())
        lines.append(f"  [{mark}] {cfg.labels[p]:>10} {probs[i, p]:.3f} (true {cfg.labels[labels[i]]}): "
                     f"{text[:100]}{'...' if len(text) > 100 else ''}")
    return "\n".join(lines)
