"""`train-classify audit --report DIR`: the audit's figures in edge.report's report.html: the
histogram of the given label's out-of-sample probability (flagged rows apart), and which label
the flagged rows were given against the one suggested."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from review_classifier.edge.report import Figure, draw_matrix, write_report
from review_classifier.shared.atomic import atomic_write_text

HIST_BINS = 20


def confidence_histogram(quality: np.ndarray, flagged: np.ndarray) -> Figure:
    edges = np.linspace(0, 1, HIST_BINS + 1)
    mask = np.zeros(len(quality), dtype=bool)
    mask[flagged] = True
    kept, sus = np.histogram(quality[~mask], edges)[0], np.histogram(quality[mask], edges)[0]
    data = {"edges": edges.round(4).tolist(), "not_flagged": kept.tolist(), "flagged": sus.tolist(),
            "what": "out-of-sample probability of the given label (cleanlab's self-confidence)"}
    rows = [[f"{edges[i]:.2f}-{edges[i + 1]:.2f}", int(kept[i]), int(sus[i])] for i in range(HIST_BINS)]
    caption = ("How sure the out-of-sample model is of each row's given label. Flagged rows sit on the left: the "
               "model is confidently sure of another label (per-class thresholds, confident learning).")
    return Figure("audit_confidence", "The given label's probability", caption, data,
                  ["probability", "not flagged", "flagged"], rows, _draw_histogram)


def _draw_histogram(plt, data: dict):
    edges = np.asarray(data["edges"])
    mids, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.bar(mids - width * 0.22, data["not_flagged"], width=width * 0.44, color="C0",
           label=f"not flagged ({sum(data['not_flagged']):,})")
    ax.bar(mids + width * 0.22, data["flagged"], width=width * 0.44, color="C3",
           label=f"flagged as a suspected label error ({sum(data['flagged']):,})")
    ax.set_yscale("log"), ax.set_ylim(bottom=0.7), ax.set_xlim(0, 1)
    ax.set_xlabel("probability of the given label (out of sample)"), ax.set_ylabel("rows (log scale)")
    ax.legend(fontsize=8), ax.grid(alpha=0.3), ax.set_title("audit: confidence in the given labels", fontsize=10)
    return fig


def issue_matrix(issues: list[dict], labels: list[str]) -> Figure:
    """Counts of flagged rows by given label (rows) and suggested label (columns)."""
    index = {n: i for i, n in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for r in issues:
        m[index[r["given"]], index[r["suggested"]]] += 1
    data = {"labels": labels, "matrix": m.tolist(), "rows": "given label", "columns": "suggested label"}
    return Figure("audit_given_vs_suggested", "Flagged rows: given against suggested label",
                  "Rows: the label in the file; columns: the label the audit suggests.", data,
                  ["given \\ suggested", *labels], [[lab, *m[i].tolist()] for i, lab in enumerate(labels)],
                  draw_matrix)


def write_audit_report(summary: dict, audit_dir: Path, report_dir: Path) -> Path:
    """report.html and its figures for an audit folder written by training.audit.label_issues.run_audit."""
    audit_dir = Path(audit_dir)
    with np.load(audit_dir / "probabilities.npz") as z:
        quality, rows = z["label_quality"], z["row"]
    with open(audit_dir / "label_issues.csv", encoding="utf-8", newline="") as f:
        issues = list(csv.DictReader(f))
    position = {int(r): i for i, r in enumerate(rows.tolist())}
    flagged = np.asarray([position[int(r["row"])] for r in issues], dtype=np.int64)
    m = summary["method"]
    facts = [("data", summary["data"]), ("rows", f"{summary['rows']:,} ({summary['scored']:,} scored)"),
             ("probabilities", f"{m['kind']} {m.get('model', '')}" + (f", {m['folds']} folds" if "folds" in m else "")),
             ("out-of-sample accuracy", f"{summary['out_of_sample_accuracy']:.4f}"),
             ("suspected label errors", f"{summary['label_issues']:,} ({summary['label_issue_share']:.1%})"),
             ("duplicates with disagreeing labels", f"{summary['duplicate_conflicts']['groups']} group(s)"),
             ("empty / mostly markup rows", f"{summary['empty_rows']} / {summary['markup_rows']}")]
    top = [f"#{r['rank']} row {r['row']}: given {r['given']}, suggested {r['suggested']} "
           f"(p={float(r['given_probability']):.3f}): {r['excerpt']}" for r in summary["top"][:5]]
    figures = [confidence_histogram(quality, flagged), issue_matrix(issues, summary["labels"])]
    atomic_write_text(Path(report_dir) / "audit.json", json.dumps(summary, indent=2) + "\n")
    return write_report(report_dir, "Label audit", facts, figures, notes=["Top suspects:", *top])
