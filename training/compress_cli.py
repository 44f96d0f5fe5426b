"""Compression and export commands for `train-classify` (registered by training.cli).

Each parses its flags, calls one library function and prints a short summary; ClassifierError
goes up to training.cli.main, which prints it as one line.
"""
from __future__ import annotations

import json
from pathlib import Path

import typer

RECIPE = typer.Option("default", "--recipe", "-r", help="Recipe name (tiny, default, gpu, fast, accurate) or a .toml file.")
RUN_RECIPE = typer.Option(None, "--recipe", "-r", show_default=False,
                          help="Recipe name or .toml file [default: the saved config.json of the run MODEL_DIR "
                               "came from, else the default recipe]")
SET = typer.Option([], "--set", "-s", help="key=value override of any config field")
DATA = typer.Option("", "--data", help="Labelled CSV/CSV.gz (or any other data source train-classify reads) for calibration and "
                                       "verification; default: the recipe's data (valid split + train sample)")


def _config(recipe: str | None, set_: list[str], model_dir: Path | None = None):
    """The recipe named, else the saved config of the run `model_dir` came from, else `default`."""
    from review_classifier.training.config import load_config, load_run_config, run_folder_of

    run = run_folder_of(model_dir) if model_dir is not None and not recipe else None
    if run is not None:
        return load_run_config(run, list(set_))
    return load_config(recipe or "default", list(set_))


def calib_and_valid(cfg, data: str):
    """(calibration reviews, validation reviews, fingerprint of the data they came from): from
    `data` split in two halves (stratified), or from the config's data: a cfg.calib_samples sample
    of train and the valid split (then the fingerprint is the training run's own)."""
    from review_classifier.training.reviews import data_fingerprint
    from review_classifier.training.sources import load_reviews
    from review_classifier.training.splits import load_splits, reduce_reviews, split_reviews

    if data:
        rest, valid = split_reviews(load_reviews(data, cfg), 0.5, cfg.seed)
        fingerprint = data_fingerprint({"calib": rest, "valid": valid})
    else:
        splits = load_splits(cfg)
        rest, valid, fingerprint = splits["train"], splits["valid"], data_fingerprint(splits)
    calib = reduce_reviews(rest, min(1.0, cfg.calib_samples / max(len(rest), 1)), cfg.seed)
    return calib, valid, fingerprint


def _fmt(m: dict | None) -> str:
    if not m:
        return "-"
    return f"acc {m.get('accuracy', float('nan')):.4f}  macro F1 {m.get('macro_f1', float('nan')):.4f}"


def export_cmd(model_dir: Path = typer.Argument(..., help="A Hugging Face sequence-classifier folder"),
               out: Path = typer.Option(..., "--out", help="Folder for the bundles (<out>/int8, <out>/fp32)"),
               precision: str = typer.Option("both", "--precision", help="int8, fp32 or both"),
               recipe: str | None = RUN_RECIPE, set_: list[str] = SET, data: str = DATA,
               archive: bool = typer.Option(False, "--archive", help="Also write <out>/<precision>.tar.gz")) -> None:
    """Export a classifier to verified ONNX model bundles (fp32 and/or INC-quantized int8)."""
    from review_classifier.shared.errors import ClassifierError
    from review_classifier.training.bundle_build import build_bundles
    from review_classifier.training.config import run_folder_of
    precisions = ("fp32", "int8") if precision == "both" else (precision,)
    if any(p not in ("fp32", "int8") for p in precisions):
        raise ClassifierError(f"--precision must be int8, fp32 or both, got {precision!r}")
    cfg = _config(recipe, set_, model_dir)
    calib, valid, fingerprint = calib_and_valid(cfg, data)
    # the run's PyTorch test metrics, when exporting a run's checkpoint on its own data
    run = run_folder_of(model_dir) if not data else None
    results = json.loads((run / "results.json").read_text()) if run and (run / "results.json").is_file() else {}
    built = build_bundles(model_dir, out, cfg, valid=valid, calib=calib, data_fingerprint=fingerprint,
                          fp32_metrics=results.get("test"), archive=archive, precisions=precisions)
    from review_classifier.shared.bundle import load_bundle

    for name, path in built.items():
        if name.endswith("_archive"):
            typer.echo(f"{name}: {path}")
            continue
        manifest, _ = load_bundle(path)
        m = manifest.metrics.get("int8" if name == "int8" else "fp32_onnx")
        size = (path / manifest.model_file).stat().st_size / 1e6
        typer.echo(f"{name} bundle: {path}  ({size:.1f} MB model, {_fmt(m)} on {len(valid)} validation reviews)")
        quant = manifest.quantization
        if quant:
            typer.echo(f"  int8: {quant['approach']} '{quant['chosen']}' after {len(quant['trials'])} trial(s), "
                       f"relative loss {quant['relative_loss']:.2%} (tolerance {quant['tolerance']:.2%}), "
                       f"agreement with fp32 {manifest.compression['int8_agreement']:.2%}")


def quantize_cmd(fp32_model: Path = typer.Argument(..., help="fp32 ONNX model (from `export --precision fp32`)"),
                 tokenizer_dir: Path = typer.Option(..., "--tokenizer", help="Folder with the model's tokenizer"),
                 out: Path = typer.Option(..., "--out", help="Where to write the int8 ONNX model"),
                 recipe: str = RECIPE, set_: list[str] = SET, data: str = DATA) -> None:
    """Accuracy-aware INT8 quantization of an ONNX classifier with Intel Neural Compressor."""
    from review_classifier.training.export import load_tokenizer_only
    from review_classifier.training.quantize import quantize_onnx

    cfg = _config(recipe, set_)
    calib, valid, _ = calib_and_valid(cfg, data)
    report = quantize_onnx(fp32_model, out, cfg, calib.texts, valid.texts, valid.labels,
                           load_tokenizer_only(tokenizer_dir))
    for t in report["trials"]:
        typer.echo(f"  trial {t['config']}: acc {t['accuracy']:.4f} (relative loss {t['relative_loss']:.2%})")
    typer.echo(f"int8 model: {out}  ({report['size_bytes'] / 1e6:.1f} MB) {report['approach']} "
               f"'{report['chosen']}', acc {report['int8_accuracy']:.4f} vs fp32 {report['fp32_accuracy']:.4f}")


def evaluate_cmd(bundle: Path = typer.Option(..., "--bundle", help="Model bundle folder or .tar.gz"),
                 data: str = typer.Option(..., "--data", help="Labelled CSV/CSV.gz (or any other data source train-classify reads)"),
                 recipe: str = RECIPE, set_: list[str] = SET,
                 json_out: Path = typer.Option(None, "--json", help="Also write the full report here")) -> None:
    """Accuracy, macro F1 and confusion matrix of a bundle on labelled reviews (edge runtime)."""
    from review_classifier.shared.atomic import atomic_write_text
    from review_classifier.shared.bundle import load_bundle
    from review_classifier.shared.metrics import format_report
    from review_classifier.training.sources import load_reviews
    from review_classifier.training.evaluate_bundle import evaluate_bundle

    manifest, _ = load_bundle(bundle)
    cfg = _config(recipe, set_)
    if list(cfg.labels) != list(manifest.labels):   # read the data's labels in the bundle's order
        cfg = _config(recipe, list(set_) + [f"labels={json.dumps(manifest.labels)}", "label_aliases={}"])
    report = evaluate_bundle(bundle, load_reviews(data, cfg))
    typer.echo(format_report(report))
    typer.echo(f"\n{report['precision']} bundle, {report['reviews_per_s']:.1f} reviews/s on {report['threads']} thread(s)")
    if json_out:
        atomic_write_text(json_out, json.dumps(report, indent=2) + "\n")


def _compression_summary(report: dict) -> None:
    rows = [(name, m) for name, m in (("original", report["baseline"]), (report["method"], report["compressed"])) if m]
    typer.echo(f"{'':<12}{'accuracy':>10}{'macro F1':>10}{'params':>12}{'nonzero':>12}{'file MB':>9}"
               f"{'gzip MB':>9}{'reviews/s':>11}")
    for name, m in rows:
        typer.echo(f"{name:<12}{m['accuracy']:>10.4f}{m['macro_f1']:>10.4f}{m['parameters']:>12,}"
                   f"{m['nonzero_parameters']:>12,}{m.get('file_bytes', 0) / 1e6:>9.1f}"
                   f"{m.get('gzip_bytes', 0) / 1e6:>9.1f}{m['reviews_per_s']:>11.1f}")
    typer.echo(f"model: {report['model_dir']}  (export it: train-classify export {report['model_dir']} --out DIR)")


def _tokenized(cfg, model_dir: Path):
    from review_classifier.training.splits import load_splits
    from review_classifier.training.tokenized import tokenize_splits
    from review_classifier.training.model import load_tokenizer

    return tokenize_splits(load_splits(cfg), load_tokenizer(cfg, str(model_dir)), cfg)


def prune_cmd(model_dir: Path = typer.Argument(..., help="Fine-tuned classifier folder"),
              out: Path = typer.Option(..., "--out", help="Run folder; the pruned model lands in <out>/best"),
              recipe: str = RECIPE, set_: list[str] = SET) -> None:
    """Global L1 pruning of the encoder to prune_sparsity, then prune_epochs of fine-tuning."""
    from review_classifier.training.compress import prune_model

    cfg = _config(recipe, set_)
    report = prune_model(cfg, model_dir, _tokenized(cfg, model_dir), out)
    typer.echo(f"encoder sparsity {report['encoder_sparsity']:.1%} (target {report['target_sparsity']:.0%}); "
               f"accuracy right after pruning {report['accuracy_right_after_pruning']:.4f}")
    _compression_summary(report)


TEACHER = typer.Argument(..., help="Teacher: a fine-tuned checkpoint folder or a model bundle (any "
                                     "architecture), or a .npz file from `teacher-logits`")
WINDOWS = typer.Option(None, "--windows", min=1, help="Windows per text when the teacher scores "
                                                     "[default: the bundle's setting, or the config's]")


def distill_cmd(teacher: Path = TEACHER,
                out: Path = typer.Option(..., "--out", help="Run folder; the student lands in <out>/best"),
                student: str = typer.Option(None, "--student", show_default=False,
                                            help="Student model source (pkg:..., splitzip:..., a folder), cut to "
                                                 "distill_layers layers (0: all) [default: the teacher checkpoint's "
                                                 "first distill_layers layers, 0: half]"),
                windows: int = WINDOWS, recipe: str = RECIPE, set_: list[str] = SET) -> None:
    """Distil a teacher into a student: the teacher's logits on the training split, once, then
    distill_epochs of soft targets at distill_temperature plus the hard labels (distill_alpha)."""
    from review_classifier.training.compress import distill_model

    cfg = _config(recipe, set_)
    report = distill_model(cfg, teacher, out, student=student, windows=windows)
    teacher_layers = f" of {report['teacher_layers']}" if report["teacher_layers"] else ""
    typer.echo(f"student: {report['student_model']}, {report['student_layers']}{teacher_layers} layers; "
               f"test {_fmt(report['test'])}" + (f"; {report['size_ratio']:.0%} of the parameters, "
                                                 f"{report['speedup']:.2f}x PyTorch speed" if report["baseline"] else ""))
    _compression_summary(report)


def teacher_logits_cmd(teacher: Path = typer.Argument(..., help="A fine-tuned checkpoint folder or a model bundle"),
                       out: Path = typer.Option(..., "--out", help="Where to write the logits (.npz)"),
                       windows: int = WINDOWS, recipe: str | None = RUN_RECIPE, set_: list[str] = SET) -> None:
    """A teacher's logits on the training split (never valid or test), with their provenance:
    for `distill FILE` or `train --set teacher_logits=FILE`."""
    from review_classifier.training.splits import load_splits
    from review_classifier.training.teacher import write_teacher_logits

    cfg = _config(recipe, set_, teacher)
    train = load_splits(cfg)["train"]
    prov = write_teacher_logits(out, teacher, train, cfg, windows, log=typer.echo)
    typer.echo(f"teacher logits: {out}  ({len(train)} training reviews, {prov['text_policy']['max_length']} tokens "
               f"x {prov['text_policy']['windows']} window(s), teacher accuracy on them "
               f"{prov['teacher_train_accuracy']:.4f}, {prov['seconds']:.0f}s)")
