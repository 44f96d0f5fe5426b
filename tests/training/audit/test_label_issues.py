"""train-classify audit: planted label errors are found, out-of-sample means out of sample,
duplicates and markup are listed, bad input is one line."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from review_classifier.shared.errors import ClassifierError
from review_classifier.training.audit.label_issues import markup_problem, near_duplicate_key, rank_label_issues, run_audit
from review_classifier.training.audit.probs import AuditOptions, audit_config
from review_classifier.training.config.settings import load_config
from tests.conftest import NEGATIVE, POSITIVE
from tests.training.audit.builders import TOPICS, issues_of, planted_csv


def test_binary_audit_finds_the_planted_label_errors(tmp_path):
    data, flipped = planted_csv(tmp_path / "reviews.csv", ["negative", "positive"], [NEGATIVE, POSITIVE], 600, 30)
    summary = run_audit(data, load_config("default"), AuditOptions(), tmp_path / "audit", log=lambda m: None)
    issues = issues_of(tmp_path / "audit")
    found = {int(r["row"]) for r in issues}
    assert len(found & set(flipped)) >= 0.8 * len(flipped)          # recall
    assert len(found & set(flipped)) >= 0.7 * len(found)            # precision
    assert summary["label_issues"] == len(issues) and summary["scored"] == 600
    for r in issues:
        if int(r["row"]) in flipped:
            assert r["suggested"] == flipped[int(r["row"])]        # the suggestion is the true label
    probs = [float(r["given_probability"]) for r in issues]
    assert probs == sorted(probs)                                   # best suspect (least believed label) first
    assert [int(r["rank"]) for r in issues] == list(range(1, len(issues) + 1))
    assert json.loads((tmp_path / "audit" / "audit.json").read_text())["method"]["folds"] == 5


def test_multiclass_audit_with_other_columns_and_labels(tmp_path):
    names = list(TOPICS)
    data, flipped = planted_csv(tmp_path / "news.csv", names, list(TOPICS.values()), 450, 20,
                                header=("body", "topic"))
    cfg, model = audit_config("tfidf", [f"labels={','.join(names)}", "label_aliases={}", "text_column=body",
                                        "label_column=topic"])
    summary = run_audit(data, cfg, AuditOptions(model=model, folds=3), tmp_path / "audit", log=lambda m: None)
    found = {int(r["row"]) for r in issues_of(tmp_path / "audit")}
    assert len(found & set(flipped)) >= 0.8 * len(flipped)
    assert len(found & set(flipped)) >= 0.7 * len(found)
    with open(tmp_path / "audit" / "label_issues.csv", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert [f"p_{n}" for n in names] == [h for h in header if h.startswith("p_")]
    assert summary["method"]["fold_sizes"] == [150, 150, 150]


def test_duplicates_markup_and_empty_rows_are_listed(tmp_path):
    extra = [["Great film, loved it!", "positive"], ["great   FILM, <b>loved</b> it!", "negative"],
             ["Boring and dull.", "negative"], ["Boring and dull.", "positive"],
             ["<br /><br /><div></div>", "positive"], ["   ", "negative"]]
    data, _ = planted_csv(tmp_path / "r.csv", ["negative", "positive"], [NEGATIVE, POSITIVE], 100, 0, extra=extra)
    summary = run_audit(data, load_config("default"), AuditOptions(folds=3), tmp_path / "a", log=lambda m: None)
    assert summary["rows"] == 106 and summary["scored"] == 105 and summary["empty_rows"] == 1
    assert summary["duplicate_conflicts"] == {"groups": 2, "rows": 4, "exact_groups": 1}
    with open(tmp_path / "a" / "duplicate_conflicts.csv", encoding="utf-8") as f:
        groups = list(csv.DictReader(f))
    assert {(g["kind"], g["row"]) for g in groups} == {("near-exact", "101"), ("near-exact", "102"),
                                                       ("exact", "103"), ("exact", "104")}
    with open(tmp_path / "a" / "empty_or_markup.csv", encoding="utf-8") as f:
        odd = {r["row"]: r["problem"] for r in csv.DictReader(f)}
    assert odd == {"105": "no letters outside markup", "106": "empty text"}


def test_near_duplicate_key_and_markup_rules():
    assert near_duplicate_key("A  <i>Fine</i> film&amp;more") == near_duplicate_key("a fine FILM&more ")
    assert near_duplicate_key("a fine film") != near_duplicate_key("a fine film!")
    assert markup_problem("<p><a href='x'>ok</a></p><br/><br/>").endswith("markup")
    assert markup_problem("A normal review with <br /> one tag.") is None


@pytest.mark.parametrize("rows, sets, folds, message", [
    ([["a good one", "positive"]] * 3, ["text_column=body"], 2, r"missing column\(s\) \['body'\]"),
    ([["fine", "positive"], ["bad", "meh"]], [], 2, r"unknown label 'meh' at .*bad.csv, row 2 \(line 3\)"),
    ([["fine", "positive"]] * 6 + [["bad", "negative"]] * 2, [], 5, "class 'negative' has only 2 row"),
    ([["fine", "positive"]] * 6, [], 2, "no row labelled 'negative'"),
])
def test_bad_input_is_one_line(tmp_path, rows, sets, folds, message):
    path = tmp_path / "bad.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["review", "sentiment"], *rows])
    cfg, model = audit_config("tfidf", sets)
    with pytest.raises(ClassifierError, match=message) as e:
        run_audit(path, cfg, AuditOptions(model=model, folds=folds), tmp_path / "out", log=lambda m: None)
    assert "\n" not in str(e.value)


def test_the_command_writes_its_files_and_errors_are_one_line(tmp_path):
    data, _ = planted_csv(tmp_path / "r.csv", ["negative", "positive"], [NEGATIVE, POSITIVE], 80, 4)
    cli = Path(sys.executable).with_name("train-classify")
    ok = subprocess.run([str(cli), "audit", str(data), "--folds", "4", "--out", str(tmp_path / "a")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "suspected label errors in 80 rows" in ok.stdout
    assert {p.name for p in (tmp_path / "a").iterdir()} >= {"label_issues.csv", "duplicate_conflicts.csv",
                                                          "empty_or_markup.csv", "audit.json", "probabilities.npz"}
    bad = subprocess.run([str(cli), "audit", str(data), "--set", "label_column=stars", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "missing column(s) ['stars']" in bad.stderr


def test_the_filter_rule_reaches_cleanlab_and_is_recorded(tmp_path):
    """--filter-by picks cleanlab's flagging rule: predicted_neq_given flags exactly the rows whose
    most likely label is not the given one; `both` flags a subset of the default's rows."""
    data, _ = planted_csv(tmp_path / "r.csv", ["negative", "positive"], [NEGATIVE, POSITIVE], 300, 15)
    cfg = load_config("default")
    summary = run_audit(data, cfg, AuditOptions(folds=3, filter_by="predicted_neq_given"), tmp_path / "neq",
                        log=lambda m: None)
    with np.load(tmp_path / "neq" / "probabilities.npz") as z:
        probs, labels, rows = z["probabilities"].astype(np.float64), z["given"], z["row"]
    disagree = {int(rows[i]) for i in np.flatnonzero(probs.argmax(-1) != labels)}
    assert {int(r["row"]) for r in issues_of(tmp_path / "neq")} == disagree and disagree
    assert summary["filter_by"] == "predicted_neq_given" and "predicted_neq_given" in summary["ranking"]
    default, both = rank_label_issues(labels, probs)[0], rank_label_issues(labels, probs, "both")[0]
    assert set(both.tolist()) <= set(default.tolist())
    with pytest.raises(ClassifierError, match="--filter-by must be one of prune_by_noise_rate, .*got 'loose'"):
        run_audit(data, cfg, AuditOptions(filter_by="loose"), tmp_path / "x", log=lambda m: None)
    assert not (tmp_path / "x").exists()   # refused before anything was written
