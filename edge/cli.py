"""`edge-classify`: score reviews offline with a model bundle (a thin click command: its flags
become edge.options.ScoreOptions, edge.score does the work, edge.info answers --info,
edge.evaluation reports --eval; `run` turns what went wrong into one line and an exit code).

click, not typer as in train-classify: typer 0.29 builds its options with pydantic, which cost
about 0.26 s of every cold start here (docs/decisions.md)."""
from __future__ import annotations

import os
import signal
import sys

# Ctrl-C before scoring starts (imports, loading the model) ends the process quietly, with
# nothing written yet; `app` turns it back into KeyboardInterrupt for the scoring itself.
signal.signal(signal.SIGINT, signal.SIG_DFL)
from pathlib import Path

import click

from review_classifier.edge.console import PROG, STDOUT, StdoutError, say
from review_classifier.edge.options import ScoreOptions
from review_classifier.edge.records import STDIN
from review_classifier.edge.score import score
from review_classifier.shared.errors import ClassifierError
HELP = """Score reviews offline with a model bundle; one output line per input record, in order.

Reads FILE(s) in order (a folder: the files below it; a glob: its matches), or stdin when no
FILE or FILE is '-'. Input (--input-format, default auto: by file name, stdin as lines): one
text per line (lines); CSV with a header (csv, *.csv, text in --text-column, default: the
bundle's training text column, else 'review'); JSONL objects (jsonl, *.jsonl, text in
--text-field, default 'text'); Parquet (parquet, *.parquet, columns as CSV; needs the [ray] extra). UTF-8 with or without BOM, LF or CRLF; FILE.gz is gunzipped.

Output (stdout, or --output FILE): tsv 'label<TAB>probability' without a header (default);
csv with a header; jsonl objects. --top-k K adds the next K-1 labels. --output FILE appears
only when complete; until then the run writes FILE.partial and a journal, and after an
interrupt or a kill `--resume` continues after the last record it checkpointed; the finished
file is the same, byte for byte.

Bad records (invalid UTF-8, a ragged CSV row, a JSONL line that is not an object or lacks the
field): by default the first stops the run, naming its file and line. With --on-error skip
--rejects FILE each goes to FILE (JSON lines: source, line, error), keeps its place in the
output as an empty record, the rest are scored, and the run ends with exit code 4 and a count.

--engine ray scores through Ray Data (pip install 'review-classifier[ray]'): --output DIR gets
Parquet files (JSONL with --format jsonl) with one row per record: id (source:line, or
--id-column), source, line, label, probability (top_labels/top_probabilities with --top-k),
error. DIR appears complete (with _SUCCESS) or not at all. --address joins a running cluster;
without it a local one is started on the CPUs this process may use.

Empty or whitespace-only texts: with --empty mark (default) each gets a record with an empty
label and an empty probability (null in JSONL), in place, plus a count on stderr; with
--empty error the first one stops the run, naming its line. Blank lines count as empty texts.

--eval: the input must carry labels (CSV/Parquet --label-column, default: the bundle's training
label column, else 'sentiment'; JSONL --label-field, default 'label'; label names, or the
aliases the bundle's training data used, such as 0/1 and neg/pos for IMDB). Prints
accuracy, macro F1, per-class scores and the confusion matrix on stdout; predictions are then
written only with --output. Empty texts are left out of the metrics. Also reported: accuracy,
macro F1 and counts by length in the model's tokens, by truncation and by the values of
--slice-column COL, each with a 95% interval (slices under 100 texts marked); --report DIR
writes the figures (PNG + JSON) and a self-contained report.html.

The bundle: --model, else $EDGE_CLASSIFY_MODEL, else one installed with `train-classify pipeline
--install`, else the trained default model shipped with this package (--info says which).
Exit codes: 0 ok (also when the reader of stdout goes away, as with '| head'), 2 bad input
or flag, 3 missing/corrupt bundle, 4 done but some records rejected (--on-error skip), 5 an
output could not be written (disk full, file-size limit; FILE.partial kept for --resume when
every input is a file), 130 interrupted (likewise).

Nothing given is overwritten: a path to be written (--output and its .partial, journal and
lock, --rejects, --eval-json, stdout as a file) that is an input or another written path under
any spelling (links, sub/..) stops the run before anything is opened (exit 2). One run at a
time writes --output FILE.
"""

@click.command(help=HELP, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("files", nargs=-1, metavar="[FILE]...")
@click.option("--model", "-m", type=click.Path(path_type=Path), default=None,
              help="Bundle folder or .tar.gz [default: $EDGE_CLASSIFY_MODEL, an installed bundle, or the shipped "
                   "default model]")
@click.option("--info", is_flag=True, help="Describe the bundle (labels, metrics, base model, size, creation time) "
                                           "and exit")
@click.option("--input-format", default="auto", show_default=True,
              help="auto (by file name: .csv, .jsonl, .parquet, else lines), lines, csv, jsonl or parquet")
@click.option("--text-column", "--text-field", "text_field", default=None,
              help="Column (csv, parquet) or field (jsonl) holding the text [default: the bundle's training "
                   "column (csv, parquet), else review / text]")
@click.option("--label-column", "--label-field", "label_field", default=None,
              help="Column/field holding the true label, for --eval [default: the bundle's training column "
                   "(csv, parquet), else sentiment / label]")
@click.option("--format", "output_format", default=None,
              help="tsv (the default), csv or jsonl; with --engine ray parquet (its default) or jsonl")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Write results here instead of stdout (a folder with --engine ray); it appears when complete")
@click.option("--resume", is_flag=True, help="Continue the interrupted run of --output FILE where it stopped")
@click.option("--on-error", default="stop", show_default=True,
              help="Bad records: stop (error naming the place) or skip (to --rejects, exit code 4)")
@click.option("--rejects", type=click.Path(path_type=Path), default=None,
              help="With --on-error skip: write each bad record's place and reason here (JSON lines)")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Labels per record, most likely first")
@click.option("--empty", default="mark", show_default=True, help="Empty texts: mark (empty record) or error")
@click.option("--errors", default="strict", show_default=True,
              help="Invalid UTF-8: strict (error naming the line) or replace")
@click.option("--eval", "evaluate", is_flag=True, help="Compare with the input's labels; report on stdout")
@click.option("--eval-json", type=click.Path(path_type=Path), default=None,
              help="With --eval: also write the report as JSON here (atomically)")
@click.option("--slice-column", "--slice-field", "slice_column", default=None,
              help="With --eval: also accuracy, macro F1 and counts by this column's values (e.g. a product line)")
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="With --eval: write the figures (PNG + JSON) and a self-contained report.html into this folder "
                   "(needs matplotlib: pip install 'review-classifier[report]')")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--windows", type=click.IntRange(min=1), default=None,
              help="Texts longer than the model's max_length: read up to N windows of it and average "
                   "their scores (1: one input, cut head+tail or as the bundle says) [default: the bundle's]")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="onnxruntime threads [default: the CPUs this process may use; with --engine ray, per actor: "
                   "the CPUs of the smallest node]")
@click.option("--engine", default="local", show_default=True,
              help="local (this process) or ray (Ray Data: a local cluster, or --address)")
@click.option("--address", default=None, help="--engine ray: a running Ray cluster to join (e.g. ray://head:10001)")
@click.option("--actors", type=click.IntRange(min=1), default=None,
              help="--engine ray: scoring actors [default: the cluster's CPUs / --threads, one a machine]")
@click.option("--id-column", "--id-field", "id_column", default=None,
              help="--engine ray: the column/field that identifies a record [default: source:line]")
def app(files, model, info, **flags) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if info:
        from review_classifier.edge.info import describe   # lazy: numpy and the bundle reader, for --info only

        sys.exit(describe(model))
    sys.exit(run(ScoreOptions(list(files) or [STDIN], model, **flags)))


def run(opts: ScoreOptions) -> int:
    """The whole command; returns the exit code. User errors become one line on stderr."""
    try:
        code = score(opts)
        STDOUT.flush()
        return code or 0
    except ClassifierError as e:
        say(f"error: {e}")
        if isinstance(e, StdoutError):   # the interpreter's last flush must not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return e.exit_code
    except BrokenPipeError:
        # The reader went away (`| head`): not an error. Point stdout at /dev/null so the
        # interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as e:
        if _interrupted(e):   # Ctrl-C inside an import: onnxruntime re-raises it as ImportError
            say("interrupted")
            return 130
        raise


def _interrupted(e: BaseException) -> bool:
    """Whether a KeyboardInterrupt sits anywhere in the chain that led to `e` (raised from it,
    or raised while handling it: numpy's import does the latter)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)   # unwinds like Ctrl-C, so a partial --output is removed


def main(argv: list[str] | None = None) -> None:
    app.main(args=argv, prog_name=PROG)


if __name__ == "__main__":
    main()
