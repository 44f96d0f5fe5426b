"""`train-classify`: the training job's command line (thin: parse, call, print)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional

import typer

from review_classifier.shared.errors import ClassifierError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Fine-tune, evaluate, compress and export a text classifier (IMDB sentiment by default).")

RECIPE = typer.Option("default", "--recipe", "-r", help="Recipe name (tiny, default, gpu, fast, accurate) or a .toml file.")
SET = typer.Option([], "--set", "-s", help="Override any config field: --set lr=3e-5 --set epochs=2")


def _config(recipe: str, overrides: list[str]):
    from review_classifier.training.config import load_config

    return load_config(recipe, overrides)


RESTART = typer.Option(False, "--restart", help="Discard output_dir's checkpoint (last/) instead of resuming it")


@app.command()
def train(recipe: str = RECIPE, set_: list[str] = SET,
          engine: str = typer.Option("", help="manual (hand-written loop) or trainer (HF Trainer)"),
          restart: bool = RESTART) -> None:
    """Fine-tune on the configured data, keep the best epoch, evaluate it on the test split.

    An output_dir with a checkpoint (last/) resumes it when the config (but for epochs,
    max_steps, patience and other fields that do not change the steps taken) and the data are
    the same; otherwise it stops with one line. --restart discards the checkpoint."""
    from review_classifier.training.run import run_training

    cfg = _config(recipe, list(set_) + ([f"engine={engine}"] if engine else []))
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
    from review_classifier.training.bundle_build import build_bundles
    from review_classifier.training.reviews import data_fingerprint
    from review_classifier.training.splits import load_splits, reduce_reviews
    from review_classifier.training.runtime import dist_info
    from review_classifier.training.run import run_training

    cfg = _config(recipe, list(set_))
    results = run_training(cfg, restart=restart)
    if dist_info()[0] != 0:
        return
    splits = load_splits(cfg)
    calib = reduce_reviews(splits["train"], min(1.0, cfg.calib_samples / max(len(splits["train"]), 1)), cfg.seed)
    dest = Path(out) if out else Path(cfg.output_dir) / "bundles"
    bundles = build_bundles(Path(results["best_dir"]), dest, cfg, valid=splits["valid"], calib=calib,
                            data_fingerprint=data_fingerprint(splits), fp32_metrics=results["test"], archive=archive)
    for name, path in bundles.items():
        typer.echo(f"{name} bundle: {path}")
    if install:
        from review_classifier.shared.atomic import atomic_path
        from review_classifier.shared.bundle import default_bundle_dir

        target = default_bundle_dir()
        with atomic_path(target) as tmp:
            shutil.copytree(bundles["int8"], tmp)
        typer.echo(f"installed the int8 bundle at {target}: edge-classify now uses it instead of the shipped "
                   f"default model (remove {target} to go back)")
    typer.echo(which_model_note(bundles.get("int8") or bundles.get("fp32")))


def which_model_note(built: Path | None) -> str:
    """What `edge-classify` scores with after this run, and how to switch."""
    from review_classifier.edge.locate import locate_bundle

    try:
        path, source = locate_bundle()
        now = f"edge-classify uses {path} ({source})"
    except ClassifierError as e:
        now = f"edge-classify has no default model: {e}"
    switch = f"; to score with this run's bundle: edge-classify --model {built} (or export EDGE_CLASSIFY_MODEL={built})" \
        if built else ""
    return now + switch


@app.command()
def card(bundle: Path = typer.Argument(..., help="Bundle folder"),
         eval_json: Optional[Path] = typer.Option(None, "--eval", help="edge-classify --eval-json report on the test set"),
         speed_json: Optional[Path] = typer.Option(None, "--speed", help="results/bench_edge*.json"),
         dataset: str = typer.Option("IMDB test set", help="Name of the evaluated set, for the card")) -> None:
    """Record test metrics and speeds in a bundle's manifest, re-render its model card, re-seal it."""
    from review_classifier.training.model_card import update_card

    m = update_card(bundle, eval_json, speed_json, dataset)
    typer.echo(f"{bundle}/README.md updated; manifest sha256 now {_manifest_sha(bundle)} ({m.created_at})")


def _manifest_sha(bundle: Path) -> str:
    from review_classifier.shared.bundle import MANIFEST, sha256_file

    return sha256_file(Path(bundle) / MANIFEST)


@app.command("split-csv")
def split_csv_cmd(src: Path = typer.Argument(..., help="CSV or CSV.gz with a text and a label column"),
                  out_dir: Path = typer.Option(Path("splits"), "--out"),
                  valid_size: float = typer.Option(0.1), test_size: float = typer.Option(0.1),
                  recipe: str = RECIPE, set_: list[str] = SET) -> None:
    """Split a labelled CSV into stratified train/valid/test CSVs (the original splitter)."""
    from review_classifier.training.splits import split_csv

    cfg = _config(recipe, list(set_))
    paths = split_csv(src, out_dir, valid_size, test_size, cfg.seed, cfg.text_column, cfg.label_column, cfg)
    for name, path in paths.items():
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
          excerpt: int = typer.Option(160, "--excerpt", help="Characters of text shown per row")) -> None:
    """Rank the rows whose labels look wrong (cleanlab's confident learning on out-of-sample
    probabilities), and list duplicates with disagreeing labels and rows that are empty or markup."""
    from review_classifier.training.audit import run_audit, summary_line
    from review_classifier.training.audit_probs import AuditOptions, audit_config
    from review_classifier.training.runtime import log_rank0

    cfg, model = audit_config(recipe, list(set_))
    opts = AuditOptions(model=model, folds=folds, seed=seed, excerpt_chars=excerpt,
                        teacher_logits=str(teacher_logits or ""))
    if report is not None:
        from review_classifier.edge.report import require_matplotlib

        require_matplotlib()   # before the work, not after it
    summary = run_audit(data, cfg, opts, out, log=log_rank0)
    typer.echo(summary_line(summary) + f" -> {out}/label_issues.csv")
    if report is not None:
        from review_classifier.training.audit_report import write_audit_report

        typer.echo(f"report: {write_audit_report(summary, out, report)}")


@app.command()
def config(recipe: str = RECIPE, set_: list[str] = SET) -> None:
    """Print the resolved config (defaults <- recipe <- overrides) as JSON."""
    import json

    typer.echo(json.dumps(_config(recipe, list(set_)).to_dict(), indent=2, sort_keys=True))


def _register_compression_commands() -> None:
    from review_classifier.training import compress_cli

    for name, fn in (("quantize", compress_cli.quantize_cmd), ("export", compress_cli.export_cmd),
                     ("evaluate", compress_cli.evaluate_cmd), ("prune", compress_cli.prune_cmd),
                     ("distill", compress_cli.distill_cmd), ("teacher-logits", compress_cli.teacher_logits_cmd)):
        app.command(name)(fn)


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit code."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _register_compression_commands()
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
