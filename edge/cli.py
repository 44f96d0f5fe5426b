"""`edge-classify`: score reviews offline with a model bundle (a thin click command).

click, not typer as in train-classify: typer 0.29 builds its options with pydantic, which cost
about 0.26 s of every cold start here (docs/decisions.md)."""
from __future__ import annotations

import contextlib
import os
import signal
import sys

# Ctrl-C before scoring starts (imports, loading the model) ends the process quietly, with
# nothing written yet; `app` turns it back into KeyboardInterrupt for the scoring itself.
signal.signal(signal.SIGINT, signal.SIG_DFL)
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import click

from review_classifier.edge.output import OUTPUT_FORMATS, Formatter
from review_classifier.edge.paths import Written, check_paths, output_files
from review_classifier.edge.records import (DEFAULT, INPUT_FORMATS, ON_ERROR, STDIN, expand_sources, format_of,
                                            read_records)
from review_classifier.shared.atomic import atomic_path
from review_classifier.edge.resume import WriteError, write_error
from review_classifier.shared.errors import BundleError, ClassifierError

PROG = "edge-classify"
EDGE_PACKAGES = ("review-classifier", "onnxruntime", "tokenizers", "numpy")
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
REJECTED_EXIT = 4

@dataclass
class ScoreOptions:
    """Everything one `edge-classify` run was asked to do (the CLI's flags, checked in `check`)."""
    sources: list[str] = field(default_factory=lambda: [STDIN])
    model: Path | None = None
    input_format: str = "lines"
    text_field: str | None = None
    label_field: str | None = None
    output_format: str | None = None   # tsv (local) or parquet (ray) unless given
    output: Path | None = None
    top_k: int = 1
    empty: str = "mark"
    errors: str = "strict"
    evaluate: bool = False
    eval_json: Path | None = None
    batch_size: int = 32
    windows: int | None = None   # None: the bundle's text policy setting
    threads: int | None = None
    on_error: str = "stop"
    rejects: Path | None = None
    resume: bool = False
    engine: str = "local"
    address: str | None = None
    id_column: str | None = None
    actors: int | None = None
    slice_column: str | None = None   # --eval: also accuracy by this column's values
    report: Path | None = None        # --eval: figures and report.html in this folder (edge.report)

    def check(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise ClassifierError(f"--input-format must be one of {INPUT_FORMATS}, got {self.input_format!r}")
        if self.on_error not in ON_ERROR:
            raise ClassifierError(f"--on-error must be one of {ON_ERROR}, got {self.on_error!r}")
        if self.engine not in ENGINES:
            raise ClassifierError(f"--engine must be one of {ENGINES}, got {self.engine!r}")
        # a folder becomes its files, a glob its matches; named pipes and character devices
        # (`<(cmd)`, /dev/stdin) are read like files
        self.sources = expand_sources(self.sources)
        if self.evaluate and any(format_of(s, self.input_format) == "lines" for s in self.sources):
            raise ClassifierError("--eval needs labelled input: CSV, JSONL or Parquet (--input-format)")
        if self.eval_json is not None and not self.evaluate:
            raise ClassifierError("--eval-json goes with --eval")
        for flag, value in (("--slice-column", self.slice_column), ("--report", self.report)):
            if value is not None and not self.evaluate:
                raise ClassifierError(f"{flag} goes with --eval")
        if self.report is not None:
            from review_classifier.edge.report import require_matplotlib

            require_matplotlib()   # before the scoring, not after it
        if (self.on_error == "skip") != (self.rejects is not None):
            raise ClassifierError("--on-error skip and --rejects FILE go together (skipped records must go somewhere)")
        if self.engine == "ray":
            self._check_ray()
        else:
            self._check_local()

    def _check_local(self) -> None:
        self.output_format = self.output_format or "tsv"
        if self.output_format not in OUTPUT_FORMATS:
            raise ClassifierError(f"--format must be one of {OUTPUT_FORMATS}, got {self.output_format!r}")
        for flag, value in (("--address", self.address), ("--id-column", self.id_column), ("--actors", self.actors)):
            if value is not None:
                raise ClassifierError(f"{flag} goes with --engine ray")
        check_paths(self.sources, self.written())
        if self.resume:
            if self.output is None:
                raise ClassifierError("--resume needs --output FILE (the run it continues)")
            if self.evaluate:
                raise ClassifierError("--resume does not go with --eval (its metrics need every record in one run)")
            if not self.resumable:
                raise ClassifierError("--resume needs input files: stdin and pipes cannot be read again")

    def _check_ray(self) -> None:
        if self.output is None:
            raise ClassifierError("--engine ray needs --output DIR (it writes a folder of Parquet or JSONL files)")
        if STDIN in self.sources:
            raise ClassifierError("--engine ray reads files, folders or globs, not stdin")
        if self.evaluate or self.resume:
            raise ClassifierError(f"{'--eval' if self.evaluate else '--resume'} goes with --engine local")
        self.output_format = self.output_format or "parquet"
        if self.output_format not in ("parquet", "jsonl"):
            raise ClassifierError("--engine ray writes --format parquet (the default) or jsonl")
        if self.output.exists() or self.output.is_symlink():
            raise ClassifierError(f"--output {self.output} exists; --engine ray writes a new folder (choose another)")
        check_paths(self.sources, self.written())

    def written(self) -> list[Written]:
        """Every path this run may write (edge.paths checks them against the inputs and each other)."""
        files = []
        if self.output is not None:
            files += [Written("--output", self.output)] if self.engine == "ray" else output_files("--output", self.output)
        if self.rejects is not None:
            files += output_files("--rejects", self.rejects)
        if self.eval_json is not None:
            files.append(Written("--eval-json", self.eval_json))
        return files

    @property
    def resumable(self) -> bool:
        """Every input is a regular file, so a later run can read it again and check it is unchanged."""
        return all(s != STDIN and os.path.isfile(s) for s in self.sources)


ENGINES = ("local", "ray")


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
        sys.exit(describe(model))
    sys.exit(run(ScoreOptions(list(files) or [STDIN], model, **flags)))


def run(opts: ScoreOptions) -> int:
    """The whole command; returns the exit code. User errors become one line on stderr."""
    try:
        code = _score(opts)
        _STDOUT.flush()
        return code or 0
    except ClassifierError as e:
        _say(f"error: {e}")
        if isinstance(e, StdoutError):   # the interpreter's last flush must not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return e.exit_code
    except BrokenPipeError:
        # The reader went away (`| head`): not an error. Point stdout at /dev/null so the
        # interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Exception as e:
        if _interrupted(e):   # Ctrl-C inside an import: onnxruntime re-raises it as ImportError
            _say("interrupted")
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
             f"model       {m.precision} ONNX, base {m.base_model_name}, "
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
    bundle, _ = locate_bundle(opts.model)
    if not bundle.exists():
        raise BundleError(f"model bundle not found: {bundle}; pass --model PATH or set EDGE_CLASSIFY_MODEL "
                          "(unset, the shipped default model is used)")
    if opts.engine == "ray":
        from review_classifier.edge.ray_engine import score_with_ray

        result = score_with_ray(opts, bundle, say=_say)
        return _summarise(result, opts)
    label_field = (opts.label_field or DEFAULT) if opts.evaluate else None
    clf = EdgeClassifier(bundle, threads=opts.threads, batch_size=opts.batch_size, windows=opts.windows)
    if opts.top_k > clf.num_labels:
        raise ClassifierError(f"--top-k {opts.top_k} is more than the bundle's {clf.num_labels} labels")
    formatter = Formatter(opts.output_format, clf.labels, opts.top_k)
    read = partial(read_records, opts.sources, opts.input_format, opts.text_field, label_field, opts.errors,
                   opts.on_error, columns=clf.manifest.data, id_field=opts.slice_column, id_flag="--slice-column")
    probe = None
    if opts.evaluate:   # each scored record's length and --slice-column value, for the slices
        from review_classifier.edge.eval_slices import SliceProbe

        probe = SliceProbe(clf, opts.slice_column)
        read = probe.reader(read)
    run_records = partial(classify_records, clf=clf, formatter=formatter, empty=opts.empty,
                          evaluate=opts.evaluate, progress=sys.stderr.isatty())
    if opts.output is not None:
        from review_classifier.edge.resume import OutputLock

        with OutputLock(opts.output) as lock:
            if opts.resumable and not opts.evaluate:
                summary = _score_resumable(opts, clf, read, run_records, lock)
            else:
                summary = _score_to_file(opts, read, run_records)
                lock.record_finished(None)
        if summary is None:
            return None
    else:
        sys.stdout.reconfigure(encoding="utf-8", newline="\n")
        with _rejects_file(opts) as rejects:
            summary = run_records(read(), out=None if opts.evaluate else _STDOUT, rejects=rejects)
    if summary.empty_count:
        _say(f"warning: {summary.empty_count} empty text(s) got an empty label "
             f"(first at {'; '.join(summary.empty)}); --empty error refuses them")
    if opts.evaluate:
        _report(opts, bundle, clf, summary, probe)
    return _summarise(summary, opts)


def _score_to_file(opts: ScoreOptions, read, run_records):
    """--output FILE that cannot be resumed (stdin, --eval): written atomically, or not at all."""
    try:
        with _rejects_file(opts) as rejects, atomic_path(opts.output) as tmp, \
                open(tmp, "w", encoding="utf-8", newline="\n") as out:
            return run_records(read(), out=out, rejects=rejects)
    except OSError as e:   # the temporary file beside FILE is gone again; FILE is as it was
        raise WriteError(f"cannot write --output {opts.output}: {e.strerror or e}; nothing was written") from None


def _score_resumable(opts: ScoreOptions, clf, read, run_records, lock):
    """--output FILE from input files: FILE.partial with a journal, so that --resume can go on."""
    from review_classifier.edge.classify import Summary
    from review_classifier.edge.resume import ResumableOutput, partial_path

    identity = run_identity(opts, clf)
    out = ResumableOutput(opts.output, opts.rejects, identity, opts.resume, say=_say, lock=lock)
    if out.done:
        return None
    kept = (f"{partial_path(opts.output)} keeps the records of its last checkpoint "
            f"({{:,}}): the same command with --resume continues")
    try:
        start = Summary.from_counters(out.counters)
        summary = run_records(read(skip=start.records), out=out, start=start, write_header=out.fresh,
                              rejects=out.reject if opts.rejects else None,
                              checkpoint=lambda s: out.maybe_checkpoint(s.counters()))
        out.finish()
    except (KeyboardInterrupt, SystemExit):
        out.keep()
        _say("stopped; " + kept.format(out.counters["records"]))
        raise
    except WriteError as e:   # disk full, a file-size limit: what is on disk stays for --resume
        out.keep()
        raise WriteError(f"{e}; " + kept.format(out.counters["records"])) from None
    except BaseException:
        out.discard()
        raise
    return summary


def run_identity(opts: ScoreOptions, clf) -> dict:
    """What must match for --resume: inputs, bundle, and every option that changes the output."""
    from review_classifier.edge import resume

    options = {k: getattr(opts, k) for k in ("input_format", "text_field", "output_format", "top_k", "empty",
                                             "errors", "on_error")}
    options["rejects"] = str(opts.rejects.absolute()) if opts.rejects else None
    options["batch_size"] = clf.batch_size
    options["windows"] = clf.policy.windows
    return resume.run_identity(opts.sources, clf.folder, options)


@contextlib.contextmanager
def _rejects_file(opts: ScoreOptions):
    """The --rejects file for a run that is not resumable: written atomically, or nothing."""
    if opts.rejects is None:
        yield None
        return
    with atomic_path(opts.rejects) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        yield f.write


def _summarise(summary, opts: ScoreOptions) -> int | None:
    """The closing line for rejected records; their exit code."""
    if summary is None or not summary.rejected:
        return None
    _say(f"{summary.rejected:,} of {summary.records:,} records rejected (first at {'; '.join(summary.rejected_at)}); "
         f"reasons in {opts.rejects}")
    return REJECTED_EXIT


def _report(opts: ScoreOptions, bundle: Path, clf, summary, probe) -> None:
    """--eval: metrics, calibration and slices on stdout; with --eval-json, also a JSON with
    provenance; with --report, the figures and report.html."""
    from review_classifier.shared.metrics import format_report, report_from_confusion
    from review_classifier.shared.slices import format_slices

    report = {**report_from_confusion(summary.confusion, clf.labels), **summary.calibration(clf.temperature),
              "slices": probe.report(summary.truth, summary.predicted, clf.labels)}
    _STDOUT.write(format_report(report) + "\n")
    _STDOUT.write(f"\ncalibration: ECE {report['ece']:.4f} (temperature {clf.temperature:.3f}; "
                  f"{report['ece_uncalibrated']:.4f} without it)\n")
    _STDOUT.write("\n" + format_slices(report["slices"]) + "\n")
    if opts.report is not None:
        from review_classifier.edge.report import write_eval_report

        _say(f"report: {write_eval_report(opts.report, report, summary, clf, bundle)}")
    if opts.eval_json is None:
        return
    import json

    from review_classifier.shared.atomic import atomic_write_text
    from review_classifier.shared.provenance import data_file, provenance

    m = clf.manifest
    quant = m.quantization
    text = json.dumps({
        **report, "bundle": str(bundle), "precision": m.precision, "base_model": m.base_model_name,
        "model_bytes": (clf.folder / m.model_file).stat().st_size, "bundle_metrics": m.metrics,
        "quantization": {k: quant[k] for k in ("approach", "chosen", "agreement", "reduce_range",
                                               "int8_weight_range") if k in quant},
        "provenance": provenance({"inputs": [data_file(s) if s != STDIN else {"source": "stdin"}
                                             for s in opts.sources]}, packages=EDGE_PACKAGES),
    }, indent=2) + "\n"
    try:
        atomic_write_text(opts.eval_json, text)
    except OSError as e:
        raise write_error(f"--eval-json {opts.eval_json}", e) from None


class StdoutError(WriteError):
    """stdout could not be written (`> /dev/full`, a full disk)."""


class _Stdout:
    """sys.stdout for the records and the --eval report: a failed write is one line, not a
    traceback (a reader that went away stays BrokenPipeError, which `run` treats as the end)."""

    def write(self, text: str) -> None:
        with _stdout_errors():
            sys.stdout.write(text)

    def flush(self) -> None:
        with _stdout_errors():
            sys.stdout.flush()


@contextlib.contextmanager
def _stdout_errors():
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        raise StdoutError(str(write_error("stdout", e))) from None


_STDOUT = _Stdout()


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
