"""`train-classify audit`: find the rows of a labelled CSV whose labels are probably wrong.

Steps: read and validate the CSV as training does (one line naming file and row for a missing
column, an unknown label, bad UTF-8); set aside rows that cannot be scored (empty text); get
out-of-sample probabilities for every other row (training.audit.probs: cross-fitting, or a
teacher's logits); rank the suspected label errors with cleanlab's confident learning
(`cleanlab.filter.find_label_issues`, its default threshold: a row is flagged when the model is
confidently sure of another class, per class thresholds from the data itself); and list exact
and near-exact duplicates whose labels disagree, and rows that are mostly markup.

Near-exact duplicates: texts equal once HTML tags and entities are removed, case folded and
whitespace collapsed (`near_duplicate_key`). Mostly markup: under half of the text's
non-space characters are left once tags and entities are removed, or no letter is.

Files written to the output folder: label_issues.csv (one row per suspect, best first: rank,
row and line in the user's file, excerpt, given and suggested label, the probability of each
label, the given label's probability), duplicate_conflicts.csv, empty_or_markup.csv,
audit.json (the summary, the method and its provenance) and probabilities.npz (every row's
out-of-sample probabilities, for a later look).
"""
from __future__ import annotations

import csv
import html
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from review_classifier.edge.report import require_matplotlib
from review_classifier.shared.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.provenance import data_file, provenance
from review_classifier.training.audit.probs import AuditOptions, audit_config, out_of_sample_probs
from review_classifier.training.audit.report import write_audit_report
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.data.reviews import Reviews
from review_classifier.training.data.sources import check_row, csv_rows, label_id
from review_classifier.training.fit.device import log_rank0

_TAG = re.compile(r"<[^<>]{0,200}>")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-f]+|[a-z]{2,8});", re.IGNORECASE)
_WS = re.compile(r"\s+")
MARKUP_SHARE = 0.5   # a text whose tags and entities are at least this share of its characters is "mostly markup"


@dataclass
class AuditRows:
    """The labelled rows of one CSV: the scorable ones as Reviews, each with its row and line."""
    reviews: Reviews
    rows: list[int]                   # row number in the file (1 = the first after the header), per review
    lines: list[int]
    empty: list[dict] = field(default_factory=list)   # rows with no text (not scored)


def read_audit_rows(path: Path, cfg: TrainConfig) -> AuditRows:
    """Every row of a labelled CSV, validated as training reads it, but empty texts kept aside
    (an audit reports them instead of stopping at the first)."""
    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"audit: {path} not found; give a labelled CSV or CSV.gz file")
    labels = cfg.label_map
    texts, ids, rows, lines, empty = [], [], [], [], []
    for row_no, line_no, row in csv_rows(path, (cfg.text_column, cfg.label_column)):
        if not row[cfg.text_column].strip():
            where = f"{path}, row {row_no} (line {line_no})"
            empty.append({"row": row_no, "line": line_no, "label": cfg.labels[label_id(labels, row[cfg.label_column], where)],
                          "problem": "empty text"})
            continue
        text, label = check_row(path, row_no, line_no, row, cfg.text_column, cfg.label_column, labels)
        texts.append(text)
        ids.append(label)
        rows.append(row_no)
        lines.append(line_no)
    if not texts:
        raise ClassifierError(f"audit: {path} has no rows with text")
    present = set(ids)
    missing = [name for i, name in enumerate(cfg.labels) if i not in present]
    if missing:
        raise ClassifierError(f"audit: {path} has no row labelled {missing[0]!r}; the audit needs every label in "
                              f"labels= to occur (set labels= to the ones the file uses)")
    return AuditRows(Reviews(texts, ids, str(path), tuple(cfg.labels)), rows, lines, empty)


def visible_text(text: str) -> str:
    """The text without HTML tags and entities, whitespace collapsed."""
    return _WS.sub(" ", _ENTITY.sub(" ", _TAG.sub(" ", text))).strip()


def near_duplicate_key(text: str) -> str:
    """Equal for texts that differ only in markup, case and whitespace."""
    return visible_text(html.unescape(text)).casefold()


def markup_problem(text: str) -> str | None:
    """Why a non-empty text is not worth scoring as a review, or None: mostly tags and entities."""
    dense = _WS.sub("", text)
    left = _WS.sub("", visible_text(text))
    if not any(ch.isalpha() for ch in left):
        return "no letters outside markup"
    if dense and 1 - len(left) / len(dense) >= MARKUP_SHARE:
        return f"{1 - len(left) / len(dense):.0%} markup"
    return None


def duplicate_conflicts(reviews: Reviews, rows: list[int]) -> list[dict]:
    """Groups of exact or near-exact duplicate texts whose labels disagree, largest first."""
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(reviews.texts):
        groups.setdefault(near_duplicate_key(text), []).append(i)
    out = []
    for members in groups.values():
        if len(members) < 2 or len({reviews.labels[i] for i in members}) < 2:
            continue
        exact = len({reviews.texts[i] for i in members}) == 1
        out.append({"kind": "exact" if exact else "near-exact", "rows": [rows[i] for i in members],
                    "labels": [reviews.names[reviews.labels[i]] for i in members], "members": members})
    return sorted(out, key=lambda g: (-len(g["rows"]), g["rows"][0]))


def excerpt(text: str, chars: int) -> str:
    flat = visible_text(text)
    return flat if len(flat) <= chars else flat[:chars - 3].rstrip() + "..."


def rank_label_issues(labels: np.ndarray, probs: np.ndarray,
                      filter_by: str = "prune_by_noise_rate") -> tuple[np.ndarray, np.ndarray]:
    """(flagged row positions, best suspect first; every row's label quality) by cleanlab's
    confident learning with `filter_by` (its default: prune_by_noise_rate) at its own threshold;
    quality = the given label's probability (cleanlab's self-confidence), which also orders the
    suspects."""
    from cleanlab.filter import find_label_issues  # lazy: cleanlab (1.7 s) only when ranking
    from cleanlab.rank import get_label_quality_scores  # lazy: as above

    ranked = find_label_issues(labels, probs, filter_by=filter_by, return_indices_ranked_by="self_confidence",
                               n_jobs=1)
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    return np.asarray(ranked, dtype=np.int64), np.asarray(quality, dtype=np.float64)


def suggested_labels(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The most likely label other than the given one."""
    other = probs.copy()
    other[np.arange(len(labels)), labels] = -1.0
    return other.argmax(-1)


def run_audit(data: Path, cfg: TrainConfig, opts: AuditOptions, out: Path,
              log: Callable[[str], None] = print) -> dict:
    """Audit one labelled CSV; write the files listed in the module docstring into `out`.
    Returns the summary (also audit.json)."""
    opts.check()
    data, out = Path(data), Path(out)
    table = read_audit_rows(data, cfg)
    reviews, names = table.reviews, list(cfg.labels)
    labels = np.asarray(reviews.labels, dtype=np.int64)
    log(f"audit: {len(reviews):,} rows of {data} ({', '.join(f'{n} {c:,}' for n, c in zip(names, reviews.class_counts(len(names))))})"
        + (f", {len(table.empty)} empty" if table.empty else ""))
    out.mkdir(parents=True, exist_ok=True)
    probs, method = out_of_sample_probs(reviews, cfg, opts, work=out / "folds", log=log)
    ranked, quality = rank_label_issues(labels, probs, opts.filter_by)
    suggested = suggested_labels(labels, probs)
    issues = [{"rank": r + 1, "row": table.rows[i], "line": table.lines[i],
               "excerpt": excerpt(reviews.texts[i], opts.excerpt_chars), "given": names[labels[i]],
               "suggested": names[suggested[i]], "given_probability": float(probs[i, labels[i]]),
               **{f"p_{n}": float(probs[i, j]) for j, n in enumerate(names)}}
              for r, i in enumerate(ranked.tolist())]
    conflicts = duplicate_conflicts(reviews, table.rows)
    markup = [{"row": table.rows[i], "line": table.lines[i], "label": names[labels[i]], "problem": why,
               "excerpt": excerpt(reviews.texts[i], opts.excerpt_chars)}
              for i, text in enumerate(reviews.texts) if (why := markup_problem(text))]
    write_csv(out / "label_issues.csv", issues,
              ["rank", "row", "line", "given", "suggested", "given_probability", *[f"p_{n}" for n in names], "excerpt"])
    write_csv(out / "duplicate_conflicts.csv",
              [{"group": g + 1, "kind": c["kind"], "row": row, "label": lab,
                "excerpt": excerpt(reviews.texts[i], opts.excerpt_chars)}
               for g, c in enumerate(conflicts) for row, lab, i in zip(c["rows"], c["labels"], c["members"])],
              ["group", "kind", "row", "label", "excerpt"])
    write_csv(out / "empty_or_markup.csv", sorted(table.empty + markup, key=lambda r: r["row"]),
              ["row", "line", "label", "problem", "excerpt"])
    save_probabilities(out / "probabilities.npz", probs, labels, table.rows, quality, names)
    predicted = probs.argmax(-1)
    summary = {
        "data": str(data), "rows": len(reviews) + len(table.empty), "scored": len(reviews), "labels": names,
        "text_column": cfg.text_column, "label_column": cfg.label_column,
        "class_counts": dict(zip(names, reviews.class_counts(len(names)).tolist())),
        "method": method,
        "out_of_sample_accuracy": float((predicted == labels).mean()),
        "label_issues": len(issues), "label_issue_share": len(issues) / len(reviews),
        "issues_by_given_label": {n: sum(1 for r in issues if r["given"] == n) for n in names},
        "ranking": f"cleanlab.filter.find_label_issues (confident learning, filter_by={opts.filter_by!r}, "
                   "its own threshold), ranked by self-confidence (the given label's probability)",
        "filter_by": opts.filter_by,
        "duplicate_conflicts": {"groups": len(conflicts), "rows": sum(len(c["rows"]) for c in conflicts),
                                "exact_groups": sum(c["kind"] == "exact" for c in conflicts)},
        "empty_rows": len(table.empty), "markup_rows": len(markup),
        "top": issues[:10],
        "files": {k: str(out / f) for k, f in (("label_issues", "label_issues.csv"),
                                                ("duplicate_conflicts", "duplicate_conflicts.csv"),
                                                ("empty_or_markup", "empty_or_markup.csv"),
                                                ("probabilities", "probabilities.npz"))},
        "provenance": provenance({"data": data_file(data)},
                                 packages=("review-classifier", "cleanlab", "scikit-learn", "numpy", "torch",
                                           "transformers")),
    }
    atomic_write_text(out / "audit.json", json.dumps(summary, indent=2) + "\n")
    return summary


def audit_csv(data: Path, recipe: str, overrides: list[str], opts: AuditOptions, out: Path,
              report: Path | None = None, log: Callable[[str], None] = log_rank0) -> tuple[dict, Path | None]:
    """`train-classify audit`: run_audit with the recipe's config (audit_config), and with
    `report`, report.html and its figures there; (summary, the report written or None)."""
    if report is not None:
        require_matplotlib()   # before the work, not after it
    cfg, _ = audit_config(recipe, overrides)
    summary = run_audit(data, cfg, opts, out, log=log)
    return summary, (write_audit_report(summary, out, report) if report is not None else None)


def summary_line(summary: dict) -> str:
    d = summary["duplicate_conflicts"]
    return (f"{summary['label_issues']:,} suspected label errors in {summary['scored']:,} rows "
            f"({summary['label_issue_share']:.1%}; out-of-sample accuracy {summary['out_of_sample_accuracy']:.1%}, "
            f"{summary['method']['kind']} {summary['method'].get('model', '')}); {d['groups']} duplicate group(s) "
            f"with disagreeing labels ({d['rows']} rows); {summary['empty_rows']} empty and {summary['markup_rows']} "
            f"mostly-markup row(s)")


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return path


def save_probabilities(path: Path, probs: np.ndarray, labels: np.ndarray, rows: list[int], quality: np.ndarray,
                       names: list[str]) -> Path:
    buf = io.BytesIO()
    np.savez_compressed(buf, probabilities=probs.astype(np.float32), given=labels, row=np.asarray(rows),
                        label_quality=quality.astype(np.float32), labels=np.asarray(names))
    atomic_write_bytes(path, buf.getvalue())
    return path
