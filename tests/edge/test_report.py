"""edge.report: report.html names only figures that exist, its numbers are their JSON's, it opens
offline; and --report without matplotlib is one line."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from review_classifier.edge.report import eval_figures, require_matplotlib, write_report
from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.metrics import classification_report
from review_classifier.shared.slices import slice_report
from tests.report_check import number, read_report


def synthetic_eval(n: int = 800, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    confidence = rng.uniform(0.34, 1.0, n)
    correct = rng.uniform(size=n) < confidence
    pred = np.where(correct, y, (y + 1) % 3)
    tokens = rng.integers(3, 400, n)
    labels = ["a", "b", "c"]
    report = classification_report(y.tolist(), pred.tolist(), labels)
    report["slices"] = slice_report(y, pred, labels, tokens=tokens, truncated=tokens > 128, max_length=128,
                                    columns={"shop": rng.choice(["x", "y", "z"], n, p=[0.7, 0.25, 0.05])})
    return report, confidence, np.clip(confidence * 1.1, 0, 1), correct


def test_every_figure_exists_and_its_table_is_its_json(tmp_path):
    report, conf, raw, correct = synthetic_eval()
    write_report(tmp_path, "eval", [("bundle", "b")], eval_figures(report, conf, raw, correct, temperature=1.3))
    parsed = read_report(tmp_path)
    names = [f["id"] for f in parsed.figures]
    assert names == ["reliability", "confusion", "accuracy_by_length", "accuracy_by_truncation", "accuracy_by_column_1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["report.html"] + [f"{n}.png" for n in names] + [f"{n}.json" for n in names])
    fig = {f["id"]: f for f in parsed.figures}
    rel = fig["reliability"]
    curves = rel["json"]["curves"]
    assert set(curves) == {"with temperature", "without temperature"}
    for row, a, b in zip(rel["rows"], curves["with temperature"], curves["without temperature"]):
        assert number(row[1]) == a["n"] and number(row[4]) == b["n"]
        if a["n"]:
            assert number(row[3]) == pytest.approx(a["accuracy"], abs=5e-5)
    assert sum(c["n"] for c in curves["with temperature"]) == len(correct)
    assert fig["confusion"]["json"]["matrix"] == report["confusion_matrix"]
    assert [[number(c) for c in row[1:]] for row in fig["confusion"]["rows"]] == report["confusion_matrix"]
    for name, key in (("accuracy_by_length", "by_length"), ("accuracy_by_truncation", "by_truncation")):
        rows, slices = fig[name]["rows"], report["slices"][key]
        assert fig[name]["json"]["slices"] == slices
        assert [r[0] for r in rows] == [s["slice"] for s in slices]
        assert [number(r[1]) for r in rows] == [s["n"] for s in slices]
        assert [number(r[2]) for r in rows] == pytest.approx([s["accuracy"] for s in slices], abs=5e-5)
    shop = fig["accuracy_by_column_1"]["rows"]
    assert shop[-1][0] == "z" and shop[-1][-1] == "small"


def test_without_temperature_the_diagram_has_one_curve(tmp_path):
    report, conf, raw, correct = synthetic_eval(200)
    write_report(tmp_path, "eval", [], eval_figures(report, conf, raw, correct, temperature=1.0))
    rel = {f["id"]: f for f in read_report(tmp_path).figures}["reliability"]
    assert list(rel["json"]["curves"]) == ["as scored"]


def test_report_without_matplotlib_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ClassifierError, match=r"pip install 'review-classifier\[report\]'") as e:
        require_matplotlib()
    assert "\n" not in str(e.value)


def labelled_csv(path, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment", "shop"])
        w.writerows(rows)
    return path


def test_eval_shows_slices_and_writes_the_report(tiny, tmp_path):
    import json
    import signal

    from click.testing import CliRunner

    from review_classifier.edge.cli import app

    long = " ".join(["a long and winding review of the film"] * 12)        # past the tiny bundle's 48 tokens
    rows = [[f"short {i} fine", "positive" if i % 2 else "negative", "books" if i % 3 else "toys"] for i in range(30)]
    rows += [[long, "negative", "books"], ["", "positive", "toys"]]
    data = labelled_csv(tmp_path / "eval.csv", rows)
    old = signal.getsignal(signal.SIGTERM)
    try:
        r = CliRunner().invoke(app, ["-m", str(tiny[0]), "--eval", str(data), "--slice-column", "shop",
                                     "--eval-json", str(tmp_path / "eval.json"), "--report", str(tmp_path / "rep")])
    finally:
        signal.signal(signal.SIGTERM, old)
    assert r.exit_code == 0, r.output
    assert "column 'shop'" in r.stdout and "truncated" in r.stdout and "95% interval" in r.stdout
    report = json.loads((tmp_path / "eval.json").read_text())
    slices = report["slices"]
    assert slices["n"] == 31                                               # the empty text is left out
    assert {row["slice"]: row["n"] for row in slices["by_column"]["shop"]} == {"books": 21, "toys": 10}
    assert {row["slice"]: row["n"] for row in slices["by_truncation"]} == {"read whole": 30, "truncated": 1}
    assert all(row["small"] for row in slices["by_column"]["shop"])
    assert report["base_model"] == "tiny-random-bert"
    fig = {f["id"]: f for f in read_report(tmp_path / "rep").figures}
    assert fig["accuracy_by_column_1"]["json"]["slices"] == slices["by_column"]["shop"]
    assert fig["confusion"]["json"]["matrix"] == report["confusion_matrix"]
    assert json.loads((tmp_path / "rep" / "eval.json").read_text())["accuracy"] == report["accuracy"]


def test_slice_and_report_flags_go_with_eval(tiny, tmp_path):
    from click.testing import CliRunner

    from review_classifier.edge.cli import app

    r = CliRunner().invoke(app, ["-m", str(tiny[0]), "--slice-column", "shop"], input="x\n")
    assert r.exit_code == 2 and "--slice-column goes with --eval" in r.stderr
    r = CliRunner().invoke(app, ["-m", str(tiny[0]), "--report", str(tmp_path / "r")], input="x\n")
    assert r.exit_code == 2 and "--report goes with --eval" in r.stderr


def test_a_slice_column_the_file_lacks_is_named_as_such(tiny, tmp_path):
    from click.testing import CliRunner

    from review_classifier.edge.cli import app

    data = tmp_path / "t.csv"
    data.write_text("review,sentiment\ngood,positive\nbad,negative\n")
    r = CliRunner().invoke(app, ["-m", str(tiny[0]), "--eval", "--slice-column", "shop", str(data)])
    assert r.exit_code == 2 and r.stderr.strip() == (
        f"edge-classify: error: {data}: no column 'shop' in the header ['review', 'sentiment']; "
        "choose one with --slice-column")
