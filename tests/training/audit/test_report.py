"""train-classify audit --report: the audit's figures in report.html match its files."""
from __future__ import annotations

import csv

import numpy as np

from review_classifier.training.audit.label_issues import run_audit
from review_classifier.training.audit.probs import AuditOptions
from review_classifier.training.audit.report import write_audit_report
from review_classifier.training.config.settings import load_config
from tests.conftest import NEGATIVE, POSITIVE
from tests.report_check import number, read_report
from tests.training.audit.builders import planted_csv


def test_audit_report_figures_match_the_audit(tmp_path):
    data, _ = planted_csv(tmp_path / "r.csv", ["negative", "positive"], [NEGATIVE, POSITIVE], 300, 15)
    summary = run_audit(data, load_config("default"), AuditOptions(folds=3), tmp_path / "a", log=lambda m: None)
    write_audit_report(summary, tmp_path / "a", tmp_path / "report")
    fig = {f["id"]: f for f in read_report(tmp_path / "report").figures}
    assert set(fig) == {"audit_confidence", "audit_given_vs_suggested"}
    hist = fig["audit_confidence"]
    assert sum(hist["json"]["flagged"]) == summary["label_issues"]
    assert sum(hist["json"]["flagged"]) + sum(hist["json"]["not_flagged"]) == summary["scored"]
    assert [number(r[2]) for r in hist["rows"]] == hist["json"]["flagged"]
    with np.load(tmp_path / "a" / "probabilities.npz") as z:
        quality = z["label_quality"]
    assert hist["json"]["not_flagged"][-1] + hist["json"]["flagged"][-1] == int((quality >= 0.95).sum())
    with open(tmp_path / "a" / "label_issues.csv", encoding="utf-8") as f:
        issues = list(csv.DictReader(f))
    matrix = fig["audit_given_vs_suggested"]["json"]["matrix"]
    assert matrix[0][1] == sum(r["given"] == "negative" for r in issues)
    assert [[number(c) for c in row[1:]] for row in fig["audit_given_vs_suggested"]["rows"]] == matrix
