"""The scoring itself: open the bundle, read the records, score them to stdout, to --output
FILE (atomically, or resumable with a journal: edge.resume) or through Ray (edge.ray_engine),
and the closing lines and exit code for rejected records."""
from __future__ import annotations

import contextlib
import sys
from functools import partial

from review_classifier.edge import empty_texts
from review_classifier.edge.console import STDOUT, say
from review_classifier.edge.options import ScoreOptions
from review_classifier.edge.output import Formatter
from review_classifier.edge.records import DEFAULT, ReadSpec, read_records
from review_classifier.edge.resume import WriteError
from review_classifier.shared.atomic import atomic_path
from review_classifier.shared.errors import BundleError, ClassifierError

REJECTED_EXIT = 4


def score(opts: ScoreOptions) -> int | None:
    """One run: checks, then the records scored; REJECTED_EXIT when some were rejected."""
    from review_classifier.edge.classify import Scoring, classify_records   # lazy: onnxruntime, after the checks
    from review_classifier.edge.locate import locate_bundle
    from review_classifier.edge.model import EdgeClassifier

    opts.check()
    bundle, _ = locate_bundle(opts.model)
    if not bundle.exists():
        raise BundleError(f"model bundle not found: {bundle}; pass --model PATH or set EDGE_CLASSIFY_MODEL "
                          "(unset, the shipped default model is used)")
    if opts.engine == "ray":
        from review_classifier.edge.ray_engine import score_with_ray   # lazy: ray, for --engine ray only

        result = score_with_ray(opts, bundle, say=say)
        return _summarise(result, opts)
    label_field = (opts.label_field or DEFAULT) if opts.evaluate else None
    clf = EdgeClassifier(bundle, threads=opts.threads, batch_size=opts.batch_size, windows=opts.windows)
    if opts.top_k > clf.num_labels:
        raise ClassifierError(f"--top-k {opts.top_k} is more than the bundle's {clf.num_labels} labels")
    formatter = Formatter(opts.output_format, clf.labels, opts.top_k)
    spec = ReadSpec(opts.input_format, opts.text_field, label_field, opts.errors, opts.on_error,
                    id_field=opts.slice_column, columns=clf.manifest.data, id_flag="--slice-column")
    read = partial(read_records, opts.sources, spec)
    probe = None
    if opts.evaluate:   # each scored record's length and --slice-column value, for the slices
        from review_classifier.edge.eval_slices import SliceProbe   # lazy: for --eval only

        probe = SliceProbe(clf, opts.slice_column)
        read = probe.reader(read)
    run_records = partial(classify_records, scoring=Scoring(clf, formatter, opts.empty, opts.evaluate,
                                                            progress=sys.stderr.isatty()))
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
            summary = run_records(read(), out=None if opts.evaluate else STDOUT, rejects=rejects)
    if summary.empty_count:
        say(empty_texts.warning(summary.empty_count, summary.empty))
    if opts.evaluate:
        from review_classifier.edge.evaluation import eval_report   # lazy: for --eval only

        eval_report(opts, bundle, clf, summary, probe)
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
    out = ResumableOutput(opts.output, opts.rejects, identity, opts.resume, say=say, lock=lock)
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
        say("stopped; " + kept.format(out.counters["records"]))
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
    say(f"{summary.rejected:,} of {summary.records:,} records rejected (first at {'; '.join(summary.rejected_at)}); "
         f"reasons in {opts.rejects}")
    return REJECTED_EXIT


