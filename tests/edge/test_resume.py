"""Big jobs on one machine: --resume after a kill, and --on-error skip --rejects."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from review_classifier.edge.cli import app
from review_classifier.edge.model import EdgeClassifier

EDGE_CLASSIFY = Path(sys.executable).with_name("edge-classify")


def cli(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def env(every: int) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_CLASSIFY", "PYTEST"))}
    e.update(TOKENIZERS_PARALLELISM="false", EDGE_CLASSIFY_CHECKPOINT_RECORDS=str(every))
    return e


def write_inputs(folder: Path) -> list[Path]:
    """Two CSV files with empty rows here and there: several windows of the batched bundle."""
    paths = []
    for k in range(2):
        p = folder / f"part{k}.csv"
        rows = ["review,sentiment"] + [("" if i % 97 == 0 else f"review {k}-{i} was " + "good " * (i % 13)) + ",x"
                                       for i in range(2600)]
        p.write_text("\n".join(rows) + "\n")
        paths.append(p)
    return paths


def start_held(args, hold: int | None, mode: str = "checkpoint", every: int = 300):
    """Start edge-classify; with `hold`, it stops at its first restart point at or past `hold`
    records (edge.resume's test hook) and says so on a pipe. Returns (process, records held at,
    or None when the run ended without reaching `hold`)."""
    e = env(every)
    if hold is None:
        return subprocess.Popen(args, env=e, stderr=subprocess.PIPE), None
    r, w = os.pipe()
    e["EDGE_CLASSIFY_TEST_HOLD"] = f"{hold}:{mode}:{w}"
    p = subprocess.Popen(args, env=e, stderr=subprocess.PIPE, pass_fds=(w,))
    os.close(w)
    with os.fdopen(r) as said:          # blocks until the run holds, or ends (end of file)
        line = said.readline()
    return p, int(line) if line else None


@pytest.mark.parametrize("which", ["tiny", "tiny_per_review"])
def test_a_run_killed_at_several_points_resumes_to_the_same_bytes(which, request, tmp_path):
    """SIGKILL at checkpoints and between them (the journal behind what is on disk), several
    times, each at an exact place whatever the CPU's speed; the resumed file equals an
    uninterrupted run's byte for byte."""
    bundle = request.getfixturevalue(which)[0]
    inputs = write_inputs(tmp_path)
    args = [EDGE_CLASSIFY, "-m", bundle, "--format", "csv", "--top-k", "2", *inputs]
    ref = tmp_path / "ref.csv"
    subprocess.run([*args, "-o", ref], check=True, env=env(10**9), timeout=300, capture_output=True)
    out = tmp_path / "out.csv"
    journal, partial = tmp_path / "out.csv.partial.json", tmp_path / "out.csv.partial"
    kills, done_at_kill, held_at = 0, [], 0
    for attempt in range(12):
        mode = "checkpoint" if attempt % 2 == 0 else "between"
        p, held = start_held([*args, "-o", out] + (["--resume"] if attempt else []),
                             held_at + 300 * (1 + attempt % 3), mode)
        if held is None:                                   # past the last restart point: it finished
            break
        p.send_signal(signal.SIGKILL)
        assert p.wait(timeout=30) == -signal.SIGKILL
        p.stderr.close()
        kills += 1
        journalled = json.loads(journal.read_text())["counters"]["records"]
        assert journalled == held if mode == "checkpoint" else journalled < held
        assert partial.stat().st_size >= json.loads(journal.read_text())["offsets"]["output"]
        done_at_kill.append(journalled)
        held_at = held
        assert not out.exists() and partial.exists()
    else:
        p, _ = start_held([*args, "-o", out, "--resume"], None)
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    assert kills >= 2 and done_at_kill == sorted(done_at_kill)
    assert out.read_bytes() == ref.read_bytes()
    assert not partial.exists() and not journal.exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.csv", "part0.csv", "part1.csv", "ref.csv"]


def test_resume_refuses_another_run_and_continues_only_its_own(tiny, tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("".join(f"text {i}\n" for i in range(50)))
    out = tmp_path / "out.tsv"
    journal = {"identity": {"version": 1, "inputs": [], "bundle_manifest_sha256": "x", "options": {}},
               "offsets": {"output": 0, "rejects": 0}, "counters": {"records": 0}}
    (tmp_path / "out.tsv.partial").write_text("")
    (tmp_path / "out.tsv.partial.json").write_text(json.dumps(journal))
    r = cli("-m", tiny[0], a, "-o", out, "--resume")
    assert r.exit_code == 2 and "written for other inputs, bundle or options (the input files differ" in r.stderr
    r = cli("-m", tiny[0], a, "-o", out)                             # without --resume: start over
    assert r.exit_code == 0 and "discarding the unfinished" in r.stderr
    assert out.read_text() == cli("-m", tiny[0], a).stdout
    r = cli("-m", tiny[0], a, "-o", out, "--resume")
    assert r.exit_code == 0 and "is complete" in r.stderr
    for bad, message in ((["-o", out, "--resume", "--eval"], "--resume does not go with --eval"),
                         (["--resume"], "--resume needs --output FILE")):
        r = cli("-m", tiny[0], "--input-format", "csv", a, *bad)
        assert r.exit_code == 2 and message in r.stderr, r.stderr
    r = cli("-m", tiny[0], "-o", out, "--resume", input="a\n")
    assert r.exit_code == 2 and "stdin and pipes cannot be read again" in r.stderr


def test_a_changed_input_or_option_is_not_resumed(tiny, tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("".join(f"text {i}\n" for i in range(20_000)))
    out = tmp_path / "out.tsv"
    p, held = start_held([EDGE_CLASSIFY, "-m", tiny[0], a, "-o", out], 500, every=100)
    assert held == 2048                                              # the first restart point past 500
    p.send_signal(signal.SIGTERM)                                    # a polite stop keeps the partial too
    assert p.wait(timeout=60) == 143
    assert "the same command with --resume continues" in p.stderr.read().decode()
    r = cli("-m", tiny[0], a, "-o", out, "--resume", "--top-k", "2")
    assert r.exit_code == 2 and "options differ: top_k" in r.stderr
    r = cli("-m", tiny[0], a, "-o", out, "--resume", "--windows", "3")
    assert r.exit_code == 2 and "options differ: windows" in r.stderr
    a.write_text(a.read_text() + "one more\n")
    r = cli("-m", tiny[0], a, "-o", out, "--resume")
    assert r.exit_code == 2 and "the input files differ or changed" in r.stderr


def test_bad_records_are_skipped_to_the_rejects_file_in_place(tiny, tmp_path):
    csv_in = tmp_path / "in.csv"
    csv_in.write_bytes(b"review,sentiment\ngood one,x\nragged,row,here\nbad \xff byte,x\n\nfine,x\n")
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "nice"}\n[1]\n{"body": "no text"}\nnot json\n{"text": "last"}\n')
    lines = tmp_path / "in.txt"
    lines.write_bytes(b"ok\n\xc3(\nfine\n")
    out, rejects = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
    r = cli("-m", tiny[0], "--format", "jsonl", "--on-error", "skip", "--rejects", rejects, "-o", out,
            csv_in, jsonl, lines)
    assert r.exit_code == 4, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(
        f"edge-classify: 6 of 13 records rejected (first at {csv_in}, line 3;")
    got = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert [(g["source"], g["line"]) for g in got] == [
        (str(csv_in), 3), (str(csv_in), 4), (str(jsonl), 2), (str(jsonl), 3), (str(jsonl), 4), (str(lines), 2)]
    reasons = [g["error"] for g in got]
    assert "3 fields but the header has 2" in reasons[0] and "invalid UTF-8" in reasons[1]
    assert "expected a JSON object, got list" in reasons[2] and "has no 'text' field" in reasons[3]
    assert "not valid JSON" in reasons[4] and "invalid UTF-8 (byte 0xc3" in reasons[5]
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    # one output line per input record, in place: CSV 5 (one of them blank), JSONL 5, lines 3
    assert len(rows) == 13 and [i for i, x in enumerate(rows) if x["label"] == ""] == [1, 2, 3, 6, 7, 8, 11]
    scored = [r_["label"] for r_ in rows if r_["label"]]
    expect = EdgeClassifier(tiny[0], threads=1).predict(["good one", "fine", "nice", "last", "ok", "fine"])
    assert scored == [p.label for p in expect]
    r = cli("-m", tiny[0], csv_in)                                    # the default still stops at the first
    assert r.exit_code == 2 and f"{csv_in}, line 3: 3 fields but the header has 2" in r.stderr
    r = cli("-m", tiny[0], "--on-error", "skip", csv_in)
    assert r.exit_code == 2 and "--on-error skip and --rejects FILE go together" in r.stderr
