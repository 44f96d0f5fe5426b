"""`edge-classify`: score reviews offline with a model bundle (a thin click command).

click, not typer as in train-classify: typer 0.29 builds its options with pydantic, which cost
about 0.26 s of every cold start here (docs/decisions.md)."""
from __future__ import annotations

import os
import signal
import sys

# Ctrl-C before scoring starts (imports, loading the model) ends the process quietly, with
# nothing written yet; `app` turns it back into KeyboardInterrupt for the scoring itself.
signal.signal(signal.SIGINT, signal.SIG_DFL)
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Optional

import click

from review_classifier.edge.output import OUTPUT_FORMATS, Formatter
from review_classifier.edge.records import DEFAULT_LABEL_FIELD, INPUT_FORMATS, STDIN, read_records
from review_classifier.shared.atomic import atomic_path
from review_classifier.shared.errors import BundleError, ClassifierError

PROG = "edge-classify"
EDGE_PACKAGES = ("review-classifier", "onnxruntime", "tokenizers", "numpy")
HELP = f"""Score reviews offline with a model bundle; one output line per input record, in order.

Reads FILE(s) in order, or stdin when no FILE or FILE is '-'. Input: one text per line
(--input-format lines, the default), CSV with a header (--input-format csv, text in
--text-column, default 'review'), or JSONL objects (--input-format jsonl, text in --text-field,
default 'text'). UTF-8 with or without BOM, LF or CRLF; FILE.gz is read gzipped.

Output (stdout, or --output FILE written atomically): tsv 'label<TAB>probability' without a
header (default); csv with a header; jsonl objects. --top-k K adds the next K-1 labels.

Empty or whitespace-only texts: with --empty mark (default) each gets a record with an empty
label and an empty probability (null in JSONL), in place, plus a count on stderr; with
--empty error the first one stops the run, naming its line. Blank lines count as empty texts.

--eval: the input must carry labels (CSV --label-column, default 'sentiment'; JSONL
--label-field, default 'label'; label names or aliases such as 0/1, neg/pos). Prints
accuracy, macro F1, per-class scores and the confusion matrix on stdout; predictions are then
written only with --output. Empty texts are left out of the metrics.

The bundle: --model, else $EDGE_CLASSIFY_MODEL, else one installed with `train-classify pipeline
--install`, else the trained default model shipped with this package (--info says which).
Exit codes: 0 ok (also when the reader of stdout goes away, as with '| head'), 2 bad input
or flag, 3 missing/corrupt bundle, 130 interrupted (a partial --output is removed).
"""

@dataclass
class ScoreOptions:
    """Everything one `edge-classify` run was asked to do (the CLI's flags, checked in `check`)."""
    sources: list[str] = field(default_factory=lambda: [STDIN])
    model: Path | None = None
    input_format: str = "lines"
    text_field: str | None = None
    label_field: str | None = None
    output_format: str = "tsv"
    output: Path | None = None
    top_k: int = 1
    empty: str = "mark"
    errors: str = "strict"
    evaluate: bool = False
    eval_json: Path | None = None
    batch_size: int = 32
    threads: int | None = None

    def check(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise ClassifierError(f"--format must be one of {OUTPUT_FORMATS}, got {self.output_format!r}")
        if self.input_format not in INPUT_FORMATS:
            raise ClassifierError(f"--input-format must be one of {INPUT_FORMATS}, got {self.input_format!r}")
        if self.evaluate and self.input_format == "lines":
            raise ClassifierError("--eval needs labelled input: --input-format csv or jsonl")
        if self.eval_json is not None and not self.evaluate:
            raise ClassifierError("--eval-json goes with --eval")
        for s in self.sources:
            if s == STDIN:
                continue
            if not os.path.exists(s):
                raise ClassifierError(f"input file not found: {s}")
            if os.path.isdir(s):
                raise ClassifierError(f"input {s} is a folder; give the files in it")
            # named pipes and character devices (`<(cmd)`, /dev/stdin) are read like files
        if self.output is not None:
            check_output_path(self.output)


def check_output_path(path: Path) -> None:
    """--output must be a regular file or not exist yet, in a folder that exists or can be made:
    an existing folder, device or pipe is never replaced."""
    if path.is_symlink() and not path.exists():
        raise ClassifierError(f"--output {path} is a broken symbolic link; refusing to write through it")
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise ClassifierError(f"--output {path} exists and is {kind}; refusing to replace it (choose a file path)")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ClassifierError(f"cannot write --output {path}: {parent} is a file, not a folder")
            break


@click.command(help=HELP, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("files", nargs=-1, metavar="[FILE]...")
@click.option("--model", "-m", type=click.Path(path_type=Path), default=None,
              help="Bundle folder or .tar.gz [default: $EDGE_CLASSIFY_MODEL, an installed bundle, or the shipped "
                   "default model]")
@click.option("--info", is_flag=True, help="Describe the bundle (labels, metrics, base model, size, creation time) "
                                           "and exit")
@click.option("--input-format", default="lines", show_default=True, help="lines, csv or jsonl")
@click.option("--text-column", "--text-field", "text_field", default=None,
              help="Column (csv) or field (jsonl) holding the text [default: review / text]")
@click.option("--label-column", "--label-field", "label_field", default=None,
              help="Column/field holding the true label, for --eval [default: sentiment / label]")
@click.option("--format", "output_format", default="tsv", show_default=True, help="tsv, csv or jsonl")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Write results here (atomically) instead of stdout")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Labels per record, most likely first")
@click.option("--empty", default="mark", show_default=True, help="Empty texts: mark (empty record) or error")
@click.option("--errors", default="strict", show_default=True,
              help="Invalid UTF-8: strict (error naming the line) or replace")
@click.option("--eval", "evaluate", is_flag=True, help="Compare with the input's labels; report on stdout")
@click.option("--eval-json", type=click.Path(path_type=Path), default=None,
              help="With --eval: also write the report as JSON here (atomically)")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="onnxruntime threads [default: the CPUs this process may use]")
def app(files, model, info, **flags) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if info:
        sys.exit(describe(model))
    sys.exit(run(ScoreOptions(list(files) or [STDIN], model, **flags)))


def run(opts: ScoreOptions) -> int:
    """The whole command; returns the exit code. User errors become one line on stderr."""
    try:
        _score(opts)
        sys.stdout.flush()
        return 0
    except ClassifierError as e:
        _say(f"error: {e}")
        return e.exit_code
    except BrokenPipeError:
        # The reader went away (`| head`): not an error. Point stdout at /dev/null so the
        # interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


def describe(model: Path | None) -> int:
    """`--info`: the bundle's labels, metrics, base model, size and creation time, a few lines."""
    from review_classifier.edge.locate import locate_bundle
    from review_classifier.shared.bundle import load_bundle

    try:
        path, source = locate_bundle(model)
        m, folder = load_bundle(path)
    except ClassifierError as e:
        _say(f"error: {e}")
        return e.exit_code
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    lines = [f"bundle      {path} ({source})",
             f"labels      {', '.join(m.labels)}",
             f"model       {m.precision} ONNX, base {(m.training or {}).get('model') or m.base_model}, "
             f"{size / 1e6:.1f} MB, created {m.created_at} (review-classifier {m.package_version})",
             f"text        {m.policy.max_length} tokens, {m.policy.truncation}"]
    test = (m.metrics or {}).get("test_edge")
    if test:
        lines.append(f"test        {test.get('dataset', 'test set')}: accuracy {test['accuracy']:.4f}, "
                     f"macro F1 {test['macro_f1']:.4f} (n={test['n']:,}, edge-classify --eval)")
    valid = (m.metrics or {}).get(m.precision)
    if valid:
        lines.append(f"validation  accuracy {valid['accuracy']:.4f}, macro F1 {valid['macro_f1']:.4f} (n={valid.get('n', '?')})")
    lines.append(f"calibration temperature {m.temperature:.3f}" +
                 (f" (validation ECE {m.calibration['ece_before']:.4f} -> {m.calibration['ece_after_fit']:.4f})"
                  if "ece_before" in (m.calibration or {}) else ""))
    print("\n".join(lines))
    return 0


def _score(opts: ScoreOptions) -> None:
    from review_classifier.edge.classify import classify_records
    from review_classifier.edge.locate import locate_bundle
    from review_classifier.edge.model import EdgeClassifier

    opts.check()
    label_field = (opts.label_field or DEFAULT_LABEL_FIELD[opts.input_format]) if opts.evaluate else None
    bundle, _ = locate_bundle(opts.model)
    if not bundle.exists():
        raise BundleError(f"model bundle not found: {bundle}; pass --model PATH or set EDGE_CLASSIFY_MODEL "
                          "(unset, the shipped default model is used)")
    clf = EdgeClassifier(bundle, threads=opts.threads, batch_size=opts.batch_size)
    if opts.top_k > clf.num_labels:
        raise ClassifierError(f"--top-k {opts.top_k} is more than the bundle's {clf.num_labels} labels")
    formatter = Formatter(opts.output_format, clf.labels, opts.top_k)
    records = read_records(opts.sources, opts.input_format, opts.text_field, label_field, opts.errors)
    progress = sys.stderr.isatty()
    run_records = partial(classify_records, records, clf, formatter=formatter, empty=opts.empty,
                          evaluate=opts.evaluate, progress=progress)
    if opts.output is not None:
        with atomic_path(opts.output) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as out:
            summary = run_records(out)
    else:
        sys.stdout.reconfigure(encoding="utf-8", newline="\n")
        summary = run_records(None if opts.evaluate else sys.stdout)
    if summary.empty_count:
        _say(f"warning: {summary.empty_count} empty text(s) got an empty label "
             f"(first at {'; '.join(summary.empty)}); --empty error refuses them")
    if opts.evaluate:
        _report(opts, bundle, clf, summary)


def _report(opts: ScoreOptions, bundle: Path, clf, summary) -> None:
    """--eval: metrics and calibration on stdout; with --eval-json, also a JSON with provenance."""
    from review_classifier.shared.metrics import format_report, report_from_confusion

    report = {**report_from_confusion(summary.confusion, clf.labels), **summary.calibration(clf.temperature)}
    print(format_report(report))
    print(f"\ncalibration: ECE {report['ece']:.4f} (temperature {clf.temperature:.3f}; "
          f"{report['ece_uncalibrated']:.4f} without it)")
    if opts.eval_json is None:
        return
    import json

    from review_classifier.shared.atomic import atomic_write_text
    from review_classifier.shared.provenance import data_file, provenance

    m = clf.manifest
    quant = m.quantization
    atomic_write_text(opts.eval_json, json.dumps({
        **report, "bundle": str(bundle), "precision": m.precision, "base_model": m.base_model,
        "model_bytes": (clf.folder / m.model_file).stat().st_size, "bundle_metrics": m.metrics,
        "quantization": {k: quant[k] for k in ("approach", "chosen", "agreement", "reduce_range",
                                               "int8_weight_range") if k in quant},
        "provenance": provenance({"inputs": [data_file(s) if s != STDIN else {"source": "stdin"}
                                             for s in opts.sources]}, packages=EDGE_PACKAGES),
    }, indent=2) + "\n")


def _say(message: str) -> None:
    try:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    except (BrokenPipeError, OSError):
        pass


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)   # unwinds like Ctrl-C, so a partial --output is removed


def main(argv: list[str] | None = None) -> None:
    app.main(args=argv, prog_name=PROG)


if __name__ == "__main__":
    main()
