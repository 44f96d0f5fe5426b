"""edge-classify behaviour through the click command, in process (fast)."""
import csv
import gzip
import io
import json
import shutil
import signal

import numpy as np
import pytest
from click.testing import CliRunner

from review_classifier.edge.cli import app
from review_classifier.edge.model import EdgeClassifier
from review_classifier.shared.bundle import pack_bundle
from review_classifier.shared.calibration import ece_from_confidence
from review_classifier.shared.provenance import data_file

REVIEWS = ["A wonderful, moving film.", "Dull plot, wooden acting.", "It was fine, I guess",
           "Best thing I have seen this year!!!", "never again", "Ü and ß and 日本"]


@pytest.fixture(autouse=True)
def _keep_sigterm():
    old = signal.getsignal(signal.SIGTERM)   # the command installs its own handler
    yield
    signal.signal(signal.SIGTERM, old)


def cli(*args, input=None, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input, env=env)


def expected_tsv(folder, texts, top_k=1):
    clf = EdgeClassifier(folder, threads=1)
    lines = []
    for p in clf.predict_proba(texts):
        order = np.argsort(-p, kind="stable")[:top_k]
        lines.append("\t".join(f"{clf.labels[i]}\t{p[i]:.6f}" for i in order))
    return lines


def test_lines_file_to_tsv_in_order(tiny, tmp_path):
    f = tmp_path / "reviews.txt"
    f.write_text("\n".join(REVIEWS) + "\n", encoding="utf-8")
    r = cli("--model", tiny[0], f)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == expected_tsv(tiny[0], REVIEWS)
    assert r.stderr == ""


def test_windows_flag_reads_long_texts_whole_and_leaves_short_ones(sharp, tmp_path):
    folder = sharp["batched"][0]
    texts = ["short one", " ".join(f"w{i}" for i in range(600))]
    f = tmp_path / "reviews.txt"
    f.write_text("\n".join(texts) + "\n", encoding="utf-8")
    default, windows = cli("--model", folder, f), cli("--model", folder, "--windows", "4", f)
    assert default.exit_code == 0 and windows.exit_code == 0, default.stderr + windows.stderr
    assert default.stdout.splitlines() == expected_tsv(folder, texts)
    clf = EdgeClassifier(folder, threads=1, windows=4)
    assert [len(x) for x in clf.encode(texts)] == [1, 4]
    want = clf.predict_proba(texts)
    assert windows.stdout.splitlines() == [f"{clf.labels[p.argmax()]}\t{p.max():.6f}" for p in want]
    assert windows.stdout.splitlines()[0] == default.stdout.splitlines()[0]
    assert windows.stdout.splitlines()[1] != default.stdout.splitlines()[1]
    bad = cli("--model", folder, "--windows", "0", f)
    assert bad.exit_code == 2 and "--windows" in bad.stderr


def test_stdin_dash_and_several_files(tiny, tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(REVIEWS[:2]) + "\n")
    b.write_text("\n".join(REVIEWS[4:]))                    # no final newline
    r = cli("-m", tiny[0], a, "-", b, input="\n".join(REVIEWS[2:4]) + "\n")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == expected_tsv(tiny[0], REVIEWS)
    r = cli("-m", tiny[0], input="\n".join(REVIEWS))       # no FILE: stdin
    assert r.stdout.splitlines() == expected_tsv(tiny[0], REVIEWS)


def test_empty_lines_are_marked_in_place_and_counted(tiny):
    r = cli("-m", tiny[0], input="good\n\n  \t \nbad\n\n")
    assert r.exit_code == 0
    out = r.stdout.split("\n")[:-1]
    assert len(out) == 5
    assert out[1] == out[2] == out[4] == "\t"
    assert out[0] == expected_tsv(tiny[0], ["good"])[0] and out[3] == expected_tsv(tiny[0], ["bad"])[0]
    assert "3 empty text(s)" in r.stderr and "<stdin>, line 2" in r.stderr
    r = cli("-m", tiny[0], "--format", "jsonl", input="good\n\n")
    assert [json.loads(x) for x in r.stdout.splitlines()][1] == {"label": "", "probability": None}


def test_empty_error_names_the_line(tiny):
    r = cli("-m", tiny[0], "--empty", "error", input="good\nfine\n\nbad\n")
    assert r.exit_code == 2
    assert r.stderr.strip() == "edge-classify: error: <stdin>, line 3: empty text; remove it or use --empty mark"


def test_csv_and_jsonl_input(tiny, tmp_path):
    texts = ['He said "wow", then left', "multi\nline review", "plain"]
    f = tmp_path / "in.csv"
    with open(f, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "review"])
        for i, t in enumerate(texts):
            w.writerow([i, t])
    r = cli("-m", tiny[0], "--input-format", "csv", f)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == expected_tsv(tiny[0], texts)
    j = tmp_path / "in.jsonl"
    j.write_text("".join(json.dumps({"body": t, "n": i}) + "\n" for i, t in enumerate(texts)))
    r = cli("-m", tiny[0], "--input-format", "jsonl", "--text-field", "body", j)
    assert r.stdout.splitlines() == expected_tsv(tiny[0], texts)
    r = cli("-m", tiny[0], "--input-format", "csv", "--text-column", "text", f)
    assert r.exit_code == 2 and "no column 'text'" in r.stderr and "--text-column" in r.stderr
    r = cli("-m", tiny[0], "--input-format", "jsonl", input='{"text": "ok"}\n[1, 2]\n')
    assert r.exit_code == 2 and "<stdin>, line 2: expected a JSON object" in r.stderr


def test_output_formats_and_top_k(tiny3):
    folder = tiny3[0]
    r = cli("-m", folder, "--top-k", "3", input="one\ntwo\n")
    assert r.stdout.splitlines() == expected_tsv(folder, ["one", "two"], top_k=3)
    r = cli("-m", folder, "--format", "jsonl", "--top-k", "2", input="one\n")
    obj = json.loads(r.stdout)
    p = EdgeClassifier(folder).predict_proba(["one"])[0]
    assert obj["label"] == obj["top_k"][0]["label"] == ["negative", "neutral", "positive"][p.argmax()]
    assert obj["probability"] == pytest.approx(p.max(), abs=1e-6)
    assert len(obj["top_k"]) == 2 and obj["top_k"][0]["probability"] >= obj["top_k"][1]["probability"]
    r = cli("-m", folder, "--format", "csv", "--top-k", "2", input="one\n\n")
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["label", "probability", "label_2", "probability_2"]
    assert rows[2] == ["", "", "", ""]
    r = cli("-m", folder, "--top-k", "4", input="one\n")
    assert r.exit_code == 2 and "more than the bundle's 3 labels" in r.stderr
    r = cli("-m", folder, "--format", "xml", input="one\n")
    assert r.exit_code == 2 and "--format must be one of" in r.stderr


def test_output_file_is_atomic(tiny, tmp_path):
    out = tmp_path / "out" / "pred.tsv"
    r = cli("-m", tiny[0], "-o", out, input="good\nbad\n")
    assert r.exit_code == 0 and r.stdout == ""
    assert out.read_text().splitlines() == expected_tsv(tiny[0], ["good", "bad"])
    out.write_text("previous\n")
    r = cli("-m", tiny[0], "-o", out, input=b"good\nbad\n\xff\xfe broken\n")
    assert r.exit_code == 2 and "line 3: invalid UTF-8" in r.stderr
    assert out.read_text() == "previous\n"                     # untouched by the failed run
    assert sorted(p.name for p in out.parent.iterdir()) == ["pred.tsv"]   # no temporaries left


def test_eval_reports_metrics(tiny, tmp_path):
    clf = EdgeClassifier(tiny[0])
    texts = [f"review {i} " + "good " * i for i in range(12)]
    pred = clf.predict_proba(texts).argmax(axis=1)
    truth = [1 - p if i % 3 == 0 else p for i, p in enumerate(pred)]      # 4 of 12 wrong
    spellings = {0: ["negative", "neg", "0"], 1: ["positive", "pos", "1"]}
    f = tmp_path / "labelled.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["review", "sentiment"])
        for i, (t, y) in enumerate(zip(texts, truth)):
            w.writerow([t, spellings[int(y)][i % 3]])
    r = cli("-m", tiny[0], "--input-format", "csv", "--eval", f)
    assert r.exit_code == 0, r.stderr
    assert "accuracy  0.6667" in r.stdout
    cm = np.zeros((2, 2), int)
    for t, p in zip(truth, pred):
        cm[t, p] += 1
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith(("negative ", "positive "))]
    assert [list(map(int, row[1:])) for row in rows[-2:]] == cm.tolist()
    out, report = tmp_path / "pred.tsv", tmp_path / "eval.json"
    r = cli("-m", tiny[0], "--input-format", "csv", "--eval", f, "-o", out, "--eval-json", report)
    assert len(out.read_text().splitlines()) == 12
    saved = json.loads(report.read_text())
    assert saved["accuracy"] == pytest.approx(8 / 12) and saved["confusion_matrix"] == cm.tolist()
    probs = clf.predict_proba(texts)
    correct = probs.argmax(1) == np.array(truth)
    assert saved["ece"] == pytest.approx(ece_from_confidence(probs.max(1), correct), abs=1e-6)
    assert saved["ece_uncalibrated"] == pytest.approx(saved["ece"]) and saved["temperature"] == 1.0
    # what was scored, with what, where: the data file and its sha256, the bundle, the machine
    assert saved["provenance"]["data"]["inputs"] == [data_file(f)] and len(data_file(f)["sha256"]) == 64
    assert saved["model_bytes"] == (tiny[0] / "model.onnx").stat().st_size and saved["precision"]
    assert saved["provenance"]["versions"]["onnxruntime"] != "absent" and saved["provenance"]["machine"]["cpus"] >= 1
    # the same CSV gzipped scores the same; a cut gzip is a one-line error naming the file
    gz = tmp_path / "labelled.csv.gz"
    gz.write_bytes(gzip.compress(f.read_bytes()))
    r = cli("-m", tiny[0], "--input-format", "csv", "--eval", gz, "--eval-json", report)
    assert r.exit_code == 0, r.stderr
    assert json.loads(report.read_text())["confusion_matrix"] == cm.tolist()
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(gz.read_bytes()[:-12])
    r = cli("-m", tiny[0], "--input-format", "csv", "--eval", cut)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and f"cannot read input {cut}" in r.stderr
    r = cli("-m", tiny[0], "--eval-json", report, input="x\n")
    assert r.exit_code == 2 and "--eval-json goes with --eval" in r.stderr
    j = tmp_path / "bad.jsonl"
    j.write_text('{"text": "a", "label": "positive"}\n{"text": "b", "label": "meh"}\n')
    r = cli("-m", tiny[0], "--input-format", "jsonl", "--eval", j)
    assert r.exit_code == 2 and "unknown label 'meh' at" in r.stderr and "line 2" in r.stderr
    r = cli("-m", tiny[0], "--eval", input="x\n")
    assert r.exit_code == 2 and "--eval needs labelled input" in r.stderr


def test_bundle_from_env_and_default_location(tiny, tmp_path):
    r = cli(input="good\n", env={"EDGE_CLASSIFY_MODEL": str(tiny[0])})
    assert r.exit_code == 0 and r.stdout.splitlines() == expected_tsv(tiny[0], ["good"])
    data = tmp_path / "data"
    shutil.copytree(tiny[0], data / "review-classifier" / "bundle")
    r = cli(input="good\n", env={"EDGE_CLASSIFY_MODEL": None, "XDG_DATA_HOME": str(data)})
    assert r.exit_code == 0 and r.stdout.splitlines() == expected_tsv(tiny[0], ["good"])
    r = cli("-m", tmp_path / "nowhere", input="good\n")
    assert r.exit_code == 3 and "model bundle not found" in r.stderr


def test_temperature_from_the_manifest_is_applied_and_reported(tiny, tmp_path):
    from review_classifier.shared.bundle import load_bundle, seal_bundle

    warm = tmp_path / "calibrated"
    shutil.copytree(tiny[0], warm)
    manifest, _ = load_bundle(warm)
    manifest.calibration = {"temperature": 2.5}
    seal_bundle(warm, manifest)
    texts = [f"review {i} " + "good " * i for i in range(12)]
    raw = EdgeClassifier(tiny[0], threads=1).predict_proba(texts).astype(np.float64)
    scaled = EdgeClassifier(warm, threads=1).predict_proba(texts)
    expect = np.exp(np.log(raw) / 2.5)
    expect /= expect.sum(1, keepdims=True)
    assert np.abs(scaled - expect).max() < 1e-5 and (scaled.argmax(1) == raw.argmax(1)).all()
    f = tmp_path / "labelled.csv"
    f.write_text("review,sentiment\n" + "".join(f"{t},{'positive' if i % 2 else 'negative'}\n"
                                                 for i, t in enumerate(texts)))
    report = tmp_path / "eval.json"
    r = cli("-m", warm, "--input-format", "csv", "--eval", f, "--eval-json", report)
    assert r.exit_code == 0, r.stderr
    saved = json.loads(report.read_text())
    truth = np.arange(12) % 2
    assert saved["temperature"] == 2.5
    assert saved["ece"] == pytest.approx(ece_from_confidence(scaled.max(1), scaled.argmax(1) == truth), abs=1e-5)
    assert saved["ece_uncalibrated"] == pytest.approx(ece_from_confidence(raw.max(1), raw.argmax(1) == truth), abs=1e-5)
    manifest.calibration = {"temperature": -1}
    seal_bundle(warm, manifest)
    r = cli("-m", warm, input="good\n")
    assert r.exit_code == 3 and "invalid calibration temperature" in r.stderr


def test_python_api_predict(tiny):
    from review_classifier import edge

    clf = edge.load(tiny[0])
    preds = clf.predict(["good", "bad"])
    probs = clf.predict_proba(["good", "bad"])
    assert [p.label for p in preds] == [clf.labels[i] for i in probs.argmax(1)]
    assert [p.probability for p in preds] == pytest.approx(probs.max(1).tolist())
    assert sum(preds[0].probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert next(clf.predict_stream(iter(["good"]))) == preds[0]


def _fake_shipped(monkeypatch, folder):
    """Point edge.locate's shipped default at `folder`, pinned to its manifest as it is now."""
    import review_classifier.edge.locate as locate
    from review_classifier.shared.bundle import sha256_file

    monkeypatch.setattr(locate, "SHIPPED_DIR", folder)
    monkeypatch.setattr(locate, "SHIPPED_MANIFEST_SHA256", sha256_file(folder / "manifest.json"))


def test_shipped_default_when_nothing_else_is_set(tiny, tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    shutil.copytree(tiny[0], shipped)
    _fake_shipped(monkeypatch, shipped)
    env = {"EDGE_CLASSIFY_MODEL": None, "XDG_DATA_HOME": str(tmp_path / "none")}
    r = cli(input="good\n", env=env)
    assert r.exit_code == 0 and r.stdout.splitlines() == expected_tsv(tiny[0], ["good"])
    r = cli("--info", env=env)
    assert r.exit_code == 0 and f"{shipped} (shipped default)" in r.stdout
    assert "labels      negative, positive" in r.stdout and "calibration temperature 1.000" in r.stdout
    # an installed bundle of the user's own wins over the shipped one, and --info says so
    data = tmp_path / "data"
    shutil.copytree(tiny[0], data / "review-classifier" / "bundle")
    r = cli("--info", env={"EDGE_CLASSIFY_MODEL": None, "XDG_DATA_HOME": str(data)})
    assert "installed with train-classify pipeline --install" in r.stdout


def test_shipped_default_refused_when_it_differs_from_the_pin(tiny, tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    shutil.copytree(tiny[0], shipped)
    _fake_shipped(monkeypatch, shipped)
    manifest = json.loads((shipped / "manifest.json").read_text())
    manifest["labels"] = ["positive", "negative"]           # swapped: checksums of the files still match
    (shipped / "manifest.json").write_text(json.dumps(manifest))
    env = {"EDGE_CLASSIFY_MODEL": None, "XDG_DATA_HOME": str(tmp_path / "none")}
    r = cli(input="good\n", env=env)
    assert r.exit_code == 3 and "does not match the sha256 pinned" in r.stderr and r.stdout == ""
    (shipped / "manifest.json").unlink()
    r = cli(input="good\n", env=env)
    assert r.exit_code == 3 and "shipped default model is missing" in r.stderr


def test_archive_bundle(tiny, tmp_path):
    archive = pack_bundle(tiny[0], tmp_path / "bundle.tar.gz")
    r = cli("-m", archive, input="good\n", env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert r.exit_code == 0 and r.stdout.splitlines() == expected_tsv(tiny[0], ["good"])


@pytest.mark.parametrize("damage, message", [
    ("delete_manifest", "manifest.json is missing"),
    ("garble_manifest", "is corrupt"),
    ("tamper_model", "checksum of model.onnx does not match"),
    ("delete_tokenizer", "tokenizer.json is missing"),
    ("invalid_model_resealed", "cannot load model"),
    ("truncated_archive", "cannot read bundle archive"),
])
def test_broken_bundle_is_one_clear_line(bundle_copy, tmp_path, damage, message):
    from review_classifier.shared.bundle import read_manifest, seal_bundle

    target = bundle_copy
    if damage == "delete_manifest":
        (bundle_copy / "manifest.json").unlink()
    elif damage == "garble_manifest":
        (bundle_copy / "manifest.json").write_text("{not json")
    elif damage == "tamper_model":
        with open(bundle_copy / "model.onnx", "r+b") as f:
            f.seek(1000)
            f.write(b"\x00\x01\x02")
    elif damage == "delete_tokenizer":
        (bundle_copy / "tokenizer.json").unlink()
    elif damage == "invalid_model_resealed":
        (bundle_copy / "model.onnx").write_bytes(b"this is not an onnx model")
        seal_bundle(bundle_copy, read_manifest(bundle_copy))
    elif damage == "truncated_archive":
        archive = pack_bundle(bundle_copy, tmp_path / "b.tar.gz")
        archive.write_bytes(archive.read_bytes()[:5000])
        target = archive
    r = cli("-m", target, input="good\n", env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert r.exit_code == 3
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_missing_input_file(tiny, tmp_path):
    r = cli("-m", tiny[0], tmp_path / "nope.txt")
    assert r.exit_code == 2 and r.stderr.strip() == f"edge-classify: error: input file not found: {tmp_path / 'nope.txt'}"


@pytest.mark.parametrize("extra", ["/tmp/planted.txt", "notes.txt", "sub/dir/x.py"])
def test_an_archive_with_a_member_its_manifest_does_not_list_is_refused(tiny, tmp_path, monkeypatch, extra):
    """A sealed bundle plus one stray member (an absolute path, which tarfile's data filter would
    re-root into the cache, or any other file): refused with one line naming it, nothing cached."""
    import io
    import tarfile

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    archive = pack_bundle(tiny[0], tmp_path / "good.tar.gz")
    assert cli("-m", archive, input="fine\n").exit_code == 0          # the sealed files alone pass
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "r:gz") as src, tarfile.open(bad, "w:gz") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m))
        info = tarfile.TarInfo(extra)
        info.size = 3
        dst.addfile(info, io.BytesIO(b"abc"))
    r = cli("-m", bad, input="fine\n")
    assert r.exit_code == 3 and r.stdout == ""
    assert r.stderr.strip() == (f"edge-classify: error: bundle archive {bad} holds {extra!r}, which its manifest "
                                "does not list; refusing it")
    cached = [p for p in (tmp_path / "cache" / "review-classifier").iterdir()]
    assert len(cached) == 1 and not list((tmp_path / "cache").rglob("planted.txt"))   # only the good one
