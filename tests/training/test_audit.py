"""train-classify audit: planted label errors are found, out-of-sample means out of sample,
duplicates and markup are listed, bad input is one line."""
from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from review_classifier.shared.errors import ClassifierError
from review_classifier.training.audit.label_issues import markup_problem, near_duplicate_key, read_audit_rows, run_audit
from review_classifier.training.audit.probs import AuditOptions, audit_config, cross_fit_linear, fold_ids
from review_classifier.training.config.settings import load_config
from tests.conftest import FILLER, NEGATIVE, POSITIVE

TOPICS = {"sport": ["goal", "match", "league", "coach", "striker", "season"],
          "money": ["bank", "rates", "shares", "bond", "inflation", "profit"],
          "weather": ["rain", "storm", "sunny", "forecast", "wind", "snow"]}


def cue_text(cues: list[str], rng: random.Random) -> str:
    words = rng.choices(FILLER, k=rng.randint(6, 20))
    for _ in range(rng.randint(2, 4)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(cues))
    return " ".join(words) + "."


def planted_csv(path: Path, names: list[str], cues: list[list[str]], n: int, flips: int, seed: int = 0,
                header=("review", "sentiment"), extra: list[list[str]] = ()) -> tuple[Path, dict[int, str]]:
    """n learnable rows, `flips` of them given a wrong label; returns the CSV and {row: true label}."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        y = i % len(names)
        rows.append([cue_text(cues[y], rng), names[y]])
    flipped = {}
    for i in rng.sample(range(n), flips):
        flipped[i + 1] = rows[i][1]
        rows[i][1] = rng.choice([m for m in names if m != rows[i][1]])
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows + list(extra))
    return path, flipped


def issues_of(out: Path) -> list[dict]:
    with open(out / "label_issues.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


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


def test_a_rows_probabilities_do_not_depend_on_its_own_label():
    """Cross-fitting: the model that scores a row never saw that row's label."""
    from review_classifier.training.data.reviews import Reviews

    rng = random.Random(1)
    texts = [cue_text([POSITIVE, NEGATIVE][i % 2], rng) for i in range(200)]
    labels = np.array([1 - i % 2 for i in range(200)])
    cfg = load_config("default")
    folds = fold_ids(labels, 4, 0)
    quiet = lambda m: None   # noqa: E731
    before, _ = cross_fit_linear(Reviews(texts, labels.tolist(), "t"), labels, folds, cfg, AuditOptions(folds=4), quiet)
    changed = labels.copy()
    changed[7] = 1 - changed[7]
    after, _ = cross_fit_linear(Reviews(texts, changed.tolist(), "t"), changed, folds, cfg, AuditOptions(folds=4), quiet)
    assert np.array_equal(before[7], after[7])
    assert not np.allclose(before[folds != folds[7]], after[folds != folds[7]])   # the other folds did learn from it


def test_folds_are_stratified_and_even():
    labels = np.array([0] * 50 + [1] * 20 + [2] * 7)
    folds = fold_ids(labels, 5, 3)
    for c in range(3):
        counts = np.bincount(folds[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1


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


def test_teacher_logits_replace_cross_fitting(tmp_path):
    from review_classifier.training.data.teacher_logits import save_teacher_logits

    data, flipped = planted_csv(tmp_path / "r.csv", ["negative", "positive"], [NEGATIVE, POSITIVE], 60, 4)
    cfg = load_config("default")
    reviews = read_audit_rows(data, cfg).reviews
    truth = np.array(reviews.labels)
    for row in flipped:
        truth[row - 1] = 1 - truth[row - 1]
    logits = np.where(np.eye(2)[truth] > 0, 3.0, -3.0)   # a confident teacher that knows the true labels
    teacher = save_teacher_logits(tmp_path / "t.npz", logits, reviews.texts, {"labels": cfg.labels})
    summary = run_audit(data, cfg, AuditOptions(teacher_logits=str(teacher)), tmp_path / "a", log=lambda m: None)
    assert {int(r["row"]) for r in issues_of(tmp_path / "a")} == set(flipped)
    assert summary["method"]["kind"] == "teacher logits"
    save_teacher_logits(tmp_path / "short.npz", logits[:-1], reviews.texts[:-1], {"labels": cfg.labels})
    with pytest.raises(ClassifierError, match="no teacher logits for 1 of 60"):
        run_audit(data, cfg, AuditOptions(teacher_logits=str(tmp_path / "short.npz")), tmp_path / "b",
                  log=lambda m: None)


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


def test_fine_tuning_per_fold_scores_every_row_once(tmp_path, tiny_model_dir):
    """A training recipe as the audit's model: one fine-tuning per fold (the tiny BERT, one epoch)."""
    data, _ = planted_csv(tmp_path / "r.csv", ["negative", "positive"], [NEGATIVE, POSITIVE], 48, 2)
    cfg, model = audit_config("tiny", [f"model={tiny_model_dir}", "max_length=32", "reduce_ratio=1.0", "epochs=1",
                                       "tensorboard=false", "valid_size=0.2", f"cache_dir={tmp_path / 'cache'}",
                                       "sample_predictions=0"])
    summary = run_audit(data, cfg, AuditOptions(model=model, folds=2), tmp_path / "a", log=lambda m: None)
    with np.load(tmp_path / "a" / "probabilities.npz") as z:
        probs, rows = z["probabilities"], z["row"]
    assert probs.shape == (48, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert sorted(rows.tolist()) == list(range(1, 49))
    assert [r["fold"] for r in summary["method"]["runs"]] == [0, 1]


def test_embed_model_mean_pools_under_the_mask(tmp_path, tiny_model_dir):
    from review_classifier.training.audit.probs import sentence_embeddings

    cfg = load_config("default", [f"model={tiny_model_dir}", "max_length=32"])
    texts = ["short", "a much longer text that needs padding in a batch with the short one", "short"]
    emb = sentence_embeddings(texts, cfg, log=lambda m: None)
    assert emb.shape == (3, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    alone = sentence_embeddings(["short"], cfg, log=lambda m: None)
    assert np.allclose(emb[0], alone[0], atol=1e-5) and np.allclose(emb[0], emb[2], atol=1e-6)
    data, _ = planted_csv(tmp_path / "r.csv", ["negative", "positive"], [NEGATIVE, POSITIVE], 40, 2)
    cfg, model = audit_config("embed", [f"model={tiny_model_dir}", "max_length=32"])
    summary = run_audit(data, cfg, AuditOptions(model=model, folds=2), tmp_path / "a", log=lambda m: None)
    assert summary["method"]["model"] == "embed" and summary["scored"] == 40
