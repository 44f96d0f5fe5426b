"""`edge-classify --eval`: the report on labelled records (metrics, calibration and slices on
stdout; --eval-json, a JSON with provenance; --report DIR, the figures and report.html by
edge.report)."""
from __future__ import annotations

import json
from pathlib import Path

from review_classifier.edge.console import STDOUT, say
from review_classifier.edge.options import ScoreOptions
from review_classifier.edge.records import STDIN
from review_classifier.edge.resume import write_error
from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.metrics import format_report, report_from_confusion
from review_classifier.shared.provenance import data_file, provenance
from review_classifier.shared.slices import format_slices

EDGE_PACKAGES = ("review-classifier", "onnxruntime", "tokenizers", "numpy")


def eval_report(opts: ScoreOptions, bundle: Path, clf, summary, probe) -> None:
    """--eval: metrics, calibration and slices on stdout; with --eval-json, also a JSON with
    provenance; with --report, the figures and report.html."""
    report = {**report_from_confusion(summary.confusion, clf.labels), **summary.calibration(clf.temperature),
              "slices": probe.report(summary.truth, summary.predicted, clf.labels)}
    STDOUT.write(format_report(report) + "\n")
    STDOUT.write(f"\ncalibration: ECE {report['ece']:.4f} (temperature {clf.temperature:.3f}; "
                  f"{report['ece_uncalibrated']:.4f} without it)\n")
    STDOUT.write("\n" + format_slices(report["slices"]) + "\n")
    if opts.report is not None:
        from review_classifier.edge.report import write_eval_report

        say(f"report: {write_eval_report(opts.report, report, summary, clf, bundle)}")
    if opts.eval_json is None:
        return
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


