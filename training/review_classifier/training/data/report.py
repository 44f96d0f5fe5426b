"""What a run trained on: rows and class shares per split, token lengths, the share truncated."""
from __future__ import annotations

import numpy as np

from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.data.reviews import Reviews, data_fingerprint


PERCENTILES = (50, 90, 95, 99)


def dataset_report(splits: dict[str, Reviews], tokenized, cfg: TrainConfig) -> dict:
    """Rows and class shares per split; with `tokenized`, token lengths before truncation
    (percentiles, max) and the share of reviews longer than max_length."""
    report: dict = {"fingerprint": data_fingerprint(splits), "labels": list(cfg.labels),
                    "max_length": cfg.max_length, "truncation": cfg.truncation, "splits": {}}
    for name, reviews in splits.items():
        counts = reviews.class_counts(cfg.num_labels)
        n = len(reviews)
        entry: dict = {
            "source": reviews.source,
            "rows": n,
            "classes": {cfg.labels[i]: int(c) for i, c in enumerate(counts)},
            "class_ratio": {cfg.labels[i]: (float(c) / n if n else 0.0) for i, c in enumerate(counts)},
        }
        if tokenized is not None and name in tokenized:
            full = np.asarray(tokenized[name]["full_length"], dtype=np.int64)
            if len(full):
                entry["tokens"] = {f"p{q}": float(np.percentile(full, q)) for q in PERCENTILES}
                entry["tokens"]["max"] = int(full.max())
                entry["tokens"]["mean"] = float(full.mean())
                entry["truncated"] = int((full > cfg.max_length).sum())
                entry["truncated_share"] = float((full > cfg.max_length).mean())
        report["splits"][name] = entry
    return report


def format_report(report: dict) -> str:
    """The report as a small text table."""
    labels = report["labels"]
    lines = [f"data {report['fingerprint']}  max_length {report['max_length']} ({report['truncation']})"]
    head = f"{'split':<6} {'rows':>7}  " + "  ".join(f"{lab[:10]:>10}" for lab in labels)
    head += f"  {'p50':>6} {'p90':>6} {'p95':>6} {'p99':>6} {'max':>6}  truncated"
    lines.append(head)
    for name, e in report["splits"].items():
        line = f"{name:<6} {e['rows']:>7}  " + "  ".join(f"{e['class_ratio'][lab]:>10.1%}" for lab in labels)
        if "tokens" in e:
            t = e["tokens"]
            line += "  " + " ".join(f"{t[k]:>6.0f}" for k in ("p50", "p90", "p95", "p99", "max"))
            line += f"  {e['truncated_share']:>9.1%}"
        lines.append(line)
    return "\n".join(lines)
