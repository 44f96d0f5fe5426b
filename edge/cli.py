"""`edge-classify`: score reviews offline with a model bundle (thin typer wrapper)."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

# typer validates options with pydantic, whose plugin discovery scans every installed
# package's entry points (~40 ms of a cold start); this CLI needs no plugins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
import typer  # noqa: E402

from edge.output import OUTPUT_FORMATS, Formatter  # noqa: E402
from edge.records import DEFAULT_LABEL_FIELD, INPUT_FORMATS, STDIN, read_records  # noqa: E402
from shared.atomic import atomic_path  # noqa: E402
from shared.bundle import default_bundle_dir  # noqa: E402
from shared.errors import BundleError, ClassifierError  # noqa: E402

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

The bundle: --model, else $EDGE_CLASSIFY_MODEL, else the set-up's default location.
Exit codes: 0 ok (also when the reader of stdout goes away, as with '| head'), 2 bad input
or flag, 3 missing/corrupt bundle, 130 interrupted (a partial --output is removed).
"""

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command(help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
def classify_command(
    files: Annotated[Optional[list[str]], typer.Argument(metavar="FILE", show_default=False)] = None,
    model: Annotated[Optional[Path], typer.Option("--model", "-m", show_default=False,
                     help="Bundle folder or .tar.gz [default: $EDGE_CLASSIFY_MODEL or the set-up's location]")] = None,
    input_format: Annotated[str, typer.Option("--input-format", help="lines, csv or jsonl")] = "lines",
    text_field: Annotated[Optional[str], typer.Option("--text-column", "--text-field", show_default=False,
                          help="Column (csv) or field (jsonl) holding the text [default: review / text]")] = None,
    label_field: Annotated[Optional[str], typer.Option("--label-column", "--label-field", show_default=False,
                           help="Column/field holding the true label, for --eval [default: sentiment / label]")] = None,
    output_format: Annotated[str, typer.Option("--format", help="tsv, csv or jsonl")] = "tsv",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", show_default=False,
                      help="Write results here (atomically) instead of stdout")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels per record, most likely first")] = 1,
    empty: Annotated[str, typer.Option("--empty", help="Empty texts: mark (empty record) or error")] = "mark",
    errors: Annotated[str, typer.Option("--errors", help="Invalid UTF-8: strict (error naming the line) or replace")] = "strict",
    evaluate: Annotated[bool, typer.Option("--eval", help="Compare with the input's labels; report on stdout")] = False,
    eval_json: Annotated[Optional[Path], typer.Option("--eval-json", show_default=False,
                         help="With --eval: also write the report as JSON here (atomically)")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, show_default=False,
                       help="onnxruntime threads [default: the CPUs this process may use]")] = None,
) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    code = run(files or [STDIN], model, input_format, text_field, label_field, output_format, output,
               top_k, empty, errors, evaluate, batch_size, threads, eval_json)
    raise typer.Exit(code)


def run(sources: list[str], model: Path | None, input_format: str, text_field: str | None,
        label_field: str | None, output_format: str, output: Path | None, top_k: int, empty: str,
        errors: str, evaluate: bool, batch_size: int, threads: int | None, eval_json: Path | None = None) -> int:
    """The whole command; returns the exit code. User errors become one line on stderr."""
    try:
        _score(sources, model, input_format, text_field, label_field, output_format, output,
               top_k, empty, errors, evaluate, batch_size, threads, eval_json)
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


def _score(sources, model, input_format, text_field, label_field, output_format, output,
           top_k, empty, errors, evaluate, batch_size, threads, eval_json=None) -> None:
    from edge.classify import classify_records
    from edge.model import EdgeClassifier

    if output_format not in OUTPUT_FORMATS:
        raise ClassifierError(f"--format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    if input_format not in INPUT_FORMATS:
        raise ClassifierError(f"--input-format must be one of {INPUT_FORMATS}, got {input_format!r}")
    if evaluate and input_format == "lines":
        raise ClassifierError("--eval needs labelled input: --input-format csv or jsonl")
    if eval_json is not None and not evaluate:
        raise ClassifierError("--eval-json goes with --eval")
    if evaluate:
        label_field = label_field or DEFAULT_LABEL_FIELD[input_format]
    for s in sources:
        if s != STDIN and not os.path.isfile(s):
            raise ClassifierError(f"input file not found: {s}")
    bundle = model or default_bundle_dir()
    if not bundle.exists():
        raise BundleError(f"model bundle not found: {bundle}; pass --model PATH, set EDGE_CLASSIFY_MODEL, "
                          "or install one (train-classify pipeline --install)")
    clf = EdgeClassifier(bundle, threads=threads, batch_size=batch_size)
    if top_k > clf.num_labels:
        raise ClassifierError(f"--top-k {top_k} is more than the bundle's {clf.num_labels} labels")
    formatter = Formatter(output_format, clf.labels, top_k)
    records = read_records(sources, input_format, text_field, label_field if evaluate else None, errors)
    progress = sys.stderr.isatty()
    if output is not None:
        with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as out:
            summary = classify_records(records, clf, out, formatter, empty, evaluate, progress)
    else:
        sys.stdout.reconfigure(encoding="utf-8", newline="\n")
        out = None if evaluate else sys.stdout
        summary = classify_records(records, clf, out, formatter, empty, evaluate, progress)
    if summary.empty_count:
        _say(f"warning: {summary.empty_count} empty text(s) got an empty label "
             f"(first at {'; '.join(summary.empty)}); --empty error refuses them")
    if evaluate:
        from shared.metrics import format_report, report_from_confusion

        report = report_from_confusion(summary.confusion, clf.labels)
        print(format_report(report))
        if eval_json is not None:
            import json

            from shared.atomic import atomic_write_text

            from shared.provenance import data_file, provenance

            m = clf.manifest
            quant = m.quantization
            atomic_write_text(eval_json, json.dumps({
                **report, "bundle": str(bundle), "precision": m.precision, "base_model": m.base_model,
                "model_bytes": (clf.folder / m.model_file).stat().st_size, "bundle_metrics": m.metrics,
                "quantization": {k: quant[k] for k in ("approach", "chosen", "agreement", "reduce_range",
                                                       "int8_weight_range") if k in quant},
                "provenance": provenance({"inputs": [data_file(s) if s != STDIN else {"source": "stdin"}
                                                     for s in sources]}, packages=EDGE_PACKAGES),
            }, indent=2) + "\n")


def _say(message: str) -> None:
    try:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    except (BrokenPipeError, OSError):
        pass


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)   # unwinds like Ctrl-C, so a partial --output is removed


def main() -> None:
    app(prog_name=PROG)


if __name__ == "__main__":
    main()
