"""`train-classify`: the training job's command line. Each command parses its flags, calls one
library function (most of them in training.pipeline or a stage's module) and prints a summary;
a ClassifierError becomes one line on stderr in `main`.

The library imports sit inside the commands, each marked `# lazy`: importing the stages pulls in
torch and more (`review_classifier.training.pipeline` 1.44 s) against 0.08 s for this module with
typer and the config (`./dev bench-imports`, results/import_times_avx512-vnni.json, the AVX-512
EPYC); `train-classify --help` and a mistyped flag should not wait for them. Inside the stages, a
lazy import is kept only for a package a module's other callers do not need (transformers 2.4 s,
the Trainer 5.9 s, Neural Compressor 4.5 s, cleanlab 1.7 s, ...), each with its reason.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.bundle import MANIFEST, load_bundle, sha256_file
from review_classifier.shared.errors import ClassifierError
from review_classifier.training.bundle.model_card import update_card
from review_classifier.training.config.settings import config_for

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Fine-tune, evaluate, compress and export a text classifier (IMDB sentiment by default).")

RECIPE = typer.Option("default", "--recipe", "-r", help="Recipe name (tiny, default, gpu, fast, accurate) or a .toml file.")
RUN_RECIPE = typer.Option(None, "--recipe", "-r", show_default=False,
                          help="Recipe name or .toml file [default: the saved config.json of the run MODEL_DIR "
                               "came from, else the default recipe]")
SET = typer.Option([], "--set", "-s", help="Override any config field: --set lr=3e-5 --set epochs=2")
RESTART = typer.Option(False, "--restart", help="Discard output_dir's checkpoint (last/) instead of resuming it")
DATA = typer.Option("", "--data", help="Labelled CSV/CSV.gz (or any other data source train-classify reads) for "
                                       "calibration and verification; default: the recipe's data (valid split + "
                                       "train sample)")
TEACHER = typer.Argument(..., help="Teacher: a fine-tuned checkpoint folder or a model bundle (any "
                                   "architecture), or a .npz file from `teacher-logits`")
WINDOWS = typer.Option(None, "--windows", min=1, help="Windows per text when the teacher scores "
                                                      "[default: the bundle's setting, or the config's]")


@app.command()
def train(recipe: str = RECIPE, set_: list[str] = SET,
          engine: str = typer.Option("", help="manual (hand-written loop) or trainer (HF Trainer)"),
          restart: bool = RESTART) -> None:
    """Fine-tune on the configured data, keep the best epoch, evaluate it on the test split.

    An output_dir with a checkpoint (last/) resumes it when the config (but for epochs,
    max_steps, patience and other fields that do not change the steps taken) and the data are
    the same; otherwise it stops with one line. --restart discards the checkpoint."""
    from review_classifier.training.fit.run import run_training  # lazy

    cfg = config_for(recipe, list(set_) + ([f"engine={engine}"] if engine else []))
    results = run_training(cfg, restart=restart)
    if results:
        typer.echo(f"test accuracy {results['test']['accuracy']:.4f}  macro F1 {results['test']['macro_f1']:.4f}  "
                   f"-> {cfg.output_dir}/results.json")


@app.command()
def pipeline(recipe: str = RECIPE, set_: list[str] = SET,
             out: str = typer.Option("", "--out", help="Bundle folder (default: <output_dir>/bundles)."),
             archive: bool = typer.Option(False, "--archive", help="Also write each bundle as one .tar.gz."),
             install: bool = typer.Option(False, "--install", help="Install the int8 bundle where edge-classify looks by default."),
             restart: bool = RESTART) -> None:
    """Train, evaluate, quantize (INT8), export to ONNX, verify, and write the model bundles."""
    from review_classifier.training.pipeline import run_pipeline, which_model_note  # lazy

    done = run_pipeline(config_for(recipe, list(set_)), out or None, archive=archive, install=install, restart=restart)
    if done is None:   # a DDP rank other than 0
        return
    for name, path in done.bundles.items():
        typer.echo(f"{name} bundle: {path}")
    if done.installed:
        typer.echo(f"installed the int8 bundle at {done.installed}: edge-classify now uses it instead of the "
                   f"shipped default model (remove {done.installed} to go back)")
    typer.echo(which_model_note(done.bundles.get("int8") or done.bundles.get("fp32")))


@app.command()
def export(model_dir: Path = typer.Argument(..., help="A Hugging Face sequence-classifier folder"),
           out: Path = typer.Option(..., "--out", help="Folder for the bundles (<out>/int8, <out>/fp32)"),
           precision: str = typer.Option("both", "--precision", help="int8, fp32 or both"),
           recipe: Optional[str] = RUN_RECIPE, set_: list[str] = SET, data: str = DATA,
           archive: bool = typer.Option(False, "--archive", help="Also write <out>/<precision>.tar.gz")) -> None:
    """Export a classifier to verified ONNX model bundles (fp32 and/or INC-quantized int8)."""
    from review_classifier.training.pipeline import PRECISIONS, export_checkpoint  # lazy

    precisions = PRECISIONS if precision == "both" else (precision,)
    built = export_checkpoint(model_dir, out, config_for(recipe, set_, model_dir), data, precisions, archive)
    for name, path in built.items():
        typer.echo(f"{name}: {path}" if name.endswith("_archive") else _bundle_line(name, path))


@app.command()
def quantize(fp32_model: Path = typer.Argument(..., help="fp32 ONNX model (from `export --precision fp32`)"),
             tokenizer_dir: Path = typer.Option(..., "--tokenizer", help="Folder with the model's tokenizer"),
             out: Path = typer.Option(..., "--out", help="Where to write the int8 ONNX model"),
             recipe: str = RECIPE, set_: list[str] = SET, data: str = DATA) -> None:
    """Accuracy-aware INT8 quantization of an ONNX classifier with Intel Neural Compressor."""
    from review_classifier.training.bundle.quantize import quantize_file  # lazy

    report = quantize_file(fp32_model, tokenizer_dir, out, config_for(recipe, set_), data)
    for t in report["trials"]:
        typer.echo(f"  trial {t['config']}: acc {t['accuracy']:.4f} (relative loss {t['relative_loss']:.2%})")
    typer.echo(f"int8 model: {out}  ({report['size_bytes'] / 1e6:.1f} MB) {report['approach']} "
               f"'{report['chosen']}', acc {report['int8_accuracy']:.4f} vs fp32 {report['fp32_accuracy']:.4f}")


@app.command()
def evaluate(bundle: Path = typer.Option(..., "--bundle", help="Model bundle folder or .tar.gz"),
             data: str = typer.Option(..., "--data", help="Labelled CSV/CSV.gz (or any other data source train-classify reads)"),
             recipe: str = RECIPE, set_: list[str] = SET,
             json_out: Path = typer.Option(None, "--json", help="Also write the full report here")) -> None:
    """Accuracy, macro F1 and confusion matrix of a bundle on labelled reviews (edge runtime)."""
    from review_classifier.shared.metrics import format_report  # lazy
    from review_classifier.training.bundle.evaluate import evaluate_bundle_on  # lazy

    report = evaluate_bundle_on(bundle, data, recipe, list(set_))
    typer.echo(format_report(report))
    typer.echo(f"\n{report['precision']} bundle, {report['reviews_per_s']:.1f} reviews/s on {report['threads']} thread(s)")
    if json_out:
        atomic_write_text(json_out, json.dumps(report, indent=2) + "\n")


@app.command()
def card(bundle: Path = typer.Argument(..., help="Bundle folder"),
         eval_json: Optional[Path] = typer.Option(None, "--eval", help="edge-classify --eval-json report on the test set"),
         speed_json: Optional[Path] = typer.Option(None, "--speed", help="results/bench_edge*.json"),
         dataset: str = typer.Option("IMDB test set", help="Name of the evaluated set, for the card"),
         train_data: Optional[Path] = typer.Option(None, "--train-data", help="The run's training data file (the "
                                                   "name the bundle records): its sha256 goes on the card"),
         test_data: Optional[Path] = typer.Option(None, "--test-data", help="The same for the run's test data file")
         ) -> None:
    """Record test metrics, speeds and data checksums in a bundle's manifest, re-render its model card, re-seal it."""
    files = {k: v for k, v in (("data", train_data), ("test_data", test_data)) if v is not None}
    m = update_card(bundle, eval_json, speed_json, dataset, files)
    typer.echo(f"{bundle}/README.md updated; manifest sha256 now {sha256_file(Path(bundle) / MANIFEST)} "
               f"({m.created_at})")


@app.command()
def prune(model_dir: Path = typer.Argument(..., help="Fine-tuned classifier folder"),
          out: Path = typer.Option(..., "--out", help="Run folder; the pruned model lands in <out>/best"),
          recipe: str = RECIPE, set_: list[str] = SET) -> None:
    """Global L1 pruning of the encoder to prune_sparsity, then prune_epochs of fine-tuning."""
    from review_classifier.training.compress.prune import prune_checkpoint  # lazy

    report = prune_checkpoint(config_for(recipe, set_), model_dir, out)
    typer.echo(f"encoder sparsity {report['encoder_sparsity']:.1%} (target {report['target_sparsity']:.0%}); "
               f"accuracy right after pruning {report['accuracy_right_after_pruning']:.4f}")
    _compression_summary(report)


@app.command()
def distill(teacher: Path = TEACHER,
            out: Path = typer.Option(..., "--out", help="Run folder; the student lands in <out>/best"),
            student: str = typer.Option(None, "--student", show_default=False,
                                        help="Student model source (pkg:..., splitzip:..., a folder), cut to "
                                             "distill_layers layers (0: all) [default: the teacher checkpoint's "
                                             "first distill_layers layers, 0: half]"),
            windows: int = WINDOWS, recipe: str = RECIPE, set_: list[str] = SET) -> None:
    """Distil a teacher into a student: the teacher's logits on the training split, once, then
    distill_epochs of soft targets at distill_temperature plus the hard labels (distill_alpha)."""
    from review_classifier.training.compress.distil import distill_model  # lazy

    report = distill_model(config_for(recipe, set_), teacher, out, student=student, windows=windows)
    teacher_layers = f" of {report['teacher_layers']}" if report["teacher_layers"] else ""
    typer.echo(f"student: {report['student_model']}, {report['student_layers']}{teacher_layers} layers; "
               f"test {_fmt(report['test'])}" + (f"; {report['size_ratio']:.0%} of the parameters, "
                                                 f"{report['speedup']:.2f}x PyTorch speed" if report["baseline"] else ""))
    _compression_summary(report)


@app.command("teacher-logits")
def teacher_logits(teacher: Path = typer.Argument(..., help="A fine-tuned checkpoint folder or a model bundle"),
                   out: Path = typer.Option(..., "--out", help="Where to write the logits (.npz)"),
                   windows: int = WINDOWS, recipe: Optional[str] = RUN_RECIPE, set_: list[str] = SET) -> None:
    """A teacher's logits on the training split (never valid or test), with their provenance:
    for `distill FILE` or `train --set teacher_logits=FILE`."""
    from review_classifier.training.compress.teacher import write_train_logits  # lazy

    prov = write_train_logits(out, teacher, config_for(recipe, set_, teacher), windows, log=typer.echo)
    typer.echo(f"teacher logits: {out}  ({prov['data']['rows']} training reviews, {prov['text_policy']['max_length']} "
               f"tokens x {prov['text_policy']['windows']} window(s), teacher accuracy on them "
               f"{prov['teacher_train_accuracy']:.4f}, {prov['seconds']:.0f}s)")


@app.command("split-csv")
def split_csv(src: Path = typer.Argument(..., help="CSV or CSV.gz with a text and a label column"),
              out_dir: Path = typer.Option(Path("splits"), "--out"),
              valid_size: float = typer.Option(0.1), test_size: float = typer.Option(0.1),
              recipe: str = RECIPE, set_: list[str] = SET) -> None:
    """Split a labelled CSV into stratified train/valid/test CSVs (the original splitter)."""
    from review_classifier.training.data.splits import split_csv as split  # lazy

    cfg = config_for(recipe, list(set_))
    for name, path in split(src, out_dir, valid_size, test_size, cfg.seed, cfg.text_column, cfg.label_column,
                            cfg).items():
        typer.echo(f"{name}: {path}")


@app.command()
def audit(data: Path = typer.Argument(..., help="Labelled CSV or CSV.gz (columns and labels as for train: --set)"),
          recipe: str = typer.Option("tfidf", "--recipe", "-r",
                                     help="How rows are scored out of sample: tfidf (TF-IDF + logistic regression, "
                                          "the cheap default), embed (frozen encoder embeddings + logistic "
                                          "regression), or a training recipe fine-tuned per fold (tiny, default, ...)"),
          set_: list[str] = SET,
          folds: int = typer.Option(5, "--folds", "-k", help="Cross-fitting folds (each row scored by a model "
                                                             "trained on the other folds)"),
          teacher_logits: Optional[Path] = typer.Option(None, "--teacher-logits",
                                                        help="Probabilities from this teacher-logits .npz instead "
                                                             "(a teacher that never trained on these rows)"),
          out: Path = typer.Option(Path("audit"), "--out", help="Folder for label_issues.csv, audit.json, ..."),
          report: Optional[Path] = typer.Option(None, "--report", help="Also write report.html and its figures here"),
          seed: int = typer.Option(42, "--seed", help="Seed of the folds"),
          excerpt: int = typer.Option(160, "--excerpt", help="Characters of text shown per row"),
          filter_by: str = typer.Option("prune_by_noise_rate", "--filter-by",
                                        help="cleanlab's rule for flagging: prune_by_noise_rate (as many rows as "
                                             "the estimated noise), confident_learning (fewer, surer), both, "
                                             "prune_by_class, predicted_neq_given, low_normalized_margin, "
                                             "low_self_confidence")) -> None:
    """Rank the rows whose labels look wrong (cleanlab's confident learning on out-of-sample
    probabilities), and list duplicates with disagreeing labels and rows that are empty or markup."""
    from review_classifier.training.audit.label_issues import audit_csv, summary_line  # lazy
    from review_classifier.training.audit.probs import AuditOptions  # lazy

    opts = AuditOptions(model=recipe, folds=folds, seed=seed, excerpt_chars=excerpt,
                        teacher_logits=str(teacher_logits or ""), filter_by=filter_by)
    summary, written = audit_csv(data, recipe, list(set_), opts, out, report)
    typer.echo(summary_line(summary) + f" -> {out}/label_issues.csv")
    if written is not None:
        typer.echo(f"report: {written}")


@app.command()
def config(recipe: str = RECIPE, set_: list[str] = SET) -> None:
    """Print the resolved config (defaults <- recipe <- overrides) as JSON."""
    typer.echo(json.dumps(config_for(recipe, list(set_)).to_dict(), indent=2, sort_keys=True))


def _fmt(m: dict | None) -> str:
    if not m:
        return "-"
    return f"acc {m.get('accuracy', float('nan')):.4f}  macro F1 {m.get('macro_f1', float('nan')):.4f}"


def _bundle_line(name: str, path: Path) -> str:
    """One bundle as `export` reports it: size, validation metrics, and the INT8 tuning outcome."""
    manifest, _ = load_bundle(path)
    m = manifest.metrics.get("int8" if name == "int8" else "fp32_onnx")
    size = (path / manifest.model_file).stat().st_size / 1e6
    line = f"{name} bundle: {path}  ({size:.1f} MB model, {_fmt(m)} on {(m or {}).get('n', '?')} validation reviews)"
    quant = manifest.quantization
    if quant:
        line += (f"\n  int8: {quant['approach']} '{quant['chosen']}' after {len(quant['trials'])} trial(s), "
                 f"relative loss {quant['relative_loss']:.2%} (tolerance {quant['tolerance']:.2%}), "
                 f"agreement with fp32 {manifest.compression['int8_agreement']:.2%}")
    return line


def _compression_summary(report: dict) -> None:
    rows = [(name, m) for name, m in (("original", report["baseline"]), (report["method"], report["compressed"])) if m]
    typer.echo(f"{'':<12}{'accuracy':>10}{'macro F1':>10}{'params':>12}{'nonzero':>12}{'file MB':>9}"
               f"{'gzip MB':>9}{'reviews/s':>11}")
    for name, m in rows:
        typer.echo(f"{name:<12}{m['accuracy']:>10.4f}{m['macro_f1']:>10.4f}{m['parameters']:>12,}"
                   f"{m['nonzero_parameters']:>12,}{m.get('file_bytes', 0) / 1e6:>9.1f}"
                   f"{m.get('gzip_bytes', 0) / 1e6:>9.1f}{m['reviews_per_s']:>11.1f}")
    typer.echo(f"model: {report['model_dir']}  (export it: train-classify export {report['model_dir']} --out DIR)")


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit code."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()  # standalone: typer reports usage errors itself
    except ClassifierError as e:
        print(f"train-classify: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("train-classify: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
