"""--engine ray on a local Ray cluster of 2 CPUs, one for the whole module."""
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

from review_classifier.edge.cli import app  # noqa: E402
from review_classifier.edge.model import EdgeClassifier  # noqa: E402
from review_classifier.edge.ray_engine import read_output  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def texts_for(n: int, seed: int = 0) -> list[str]:
    words = ["good", "bad", "film", "plot", "boring", "great", "awful", "actors", "loved", "hated"]
    return [" ".join(words[(i * 7 + j * 3 + seed) % len(words)] for j in range(3 + i % 11)) for i in range(n)]


def test_ray_gives_the_local_predictions_for_csv_jsonl_parquet_and_lines(tiny, tmp_path):
    texts = texts_for(360)
    data = tmp_path / "in"
    (data / "sub").mkdir(parents=True)
    import csv

    with open(data / "a.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "key"])
        w.writerows([t, f"a{i}"] for i, t in enumerate(texts[:120]))
    (data / "b.jsonl").write_text("".join(json.dumps({"review": t, "key": f"b{i}"}) + "\n"
                                          for i, t in enumerate(texts[120:240])))
    pq.write_table(pa.table({"review": texts[240:], "key": [f"c{i}" for i in range(120)]}),
                   data / "sub" / "c.parquet")
    (data / "_SUCCESS").write_text("")                                     # left out of a folder
    out = tmp_path / "out"
    r = cli("-m", tiny[0], "--engine", "ray", "--text-column", "review", "--id-column", "key", "--top-k", "2",
            "-o", out, data)
    assert r.exit_code == 0, r.stderr
    assert (out / "_SUCCESS").is_file() and json.loads((out / "_SUCCESS").read_text())["records"] == 360
    table = read_output(out)
    assert table.column_names == ["id", "source", "line", "label", "probability", "top_labels",
                                  "top_probabilities", "error"]
    rows = {row["id"]: row for row in table.to_pylist()}
    ids = [f"a{i}" for i in range(120)] + [f"b{i}" for i in range(120)] + [f"c{i}" for i in range(120)]
    assert sorted(rows) == sorted(ids) and table.num_rows == 360
    expect = EdgeClassifier(tiny[0]).predict(texts)
    for i, p in zip(ids, expect):
        assert rows[i]["label"] == p.label and abs(rows[i]["probability"] - p.probability) < 1e-5
        assert rows[i]["top_labels"][0] == p.label and rows[i]["error"] is None
    assert rows["a0"]["source"] == str(data / "a.csv") and rows["a0"]["line"] == 2
    assert rows["c5"]["line"] == 6                                         # Parquet rows count from 1
    lines = tmp_path / "l.txt"
    lines.write_text("\n".join(texts[:50]) + "\n\n")
    out2 = tmp_path / "out2"
    r = cli("-m", tiny[0], "--engine", "ray", "--format", "jsonl", "-o", out2, str(tmp_path / "l.*"))
    assert r.exit_code == 0, r.stderr and "1 empty text(s)" in r.stderr
    got = sorted(read_output(out2).to_pylist(), key=lambda x: x["line"])
    assert [g["id"] for g in got] == [f"{lines}:{n}" for n in range(1, 52)]
    assert [g["label"] for g in got[:50]] == [p.label for p in expect[:50]] and got[50]["label"] is None


def bundle_copies() -> set[str]:
    """What --engine ray runs leave in the temp folder: their actors' bundle copies."""
    return {p.name for p in Path(tempfile.gettempdir()).iterdir()
            if p.name.startswith(("edge-classify-", "edge-classify-bundle-"))}


def test_an_actor_killed_mid_run_costs_no_record_and_repeats_none(tiny_per_review, tmp_path, monkeypatch):
    """The first scoring actor holds its first batch (edge.ray_engine's test hook) and is
    SIGKILLed there, at a known moment whatever the CPU's speed; Ray restarts it and retries the
    batch: every record once, and no bundle copy left in the temp folder."""
    data = tmp_path / "in"
    data.mkdir()
    n_files, per_file = 4, 2_000
    for k in range(n_files):
        (data / f"part{k}.txt").write_text("\n".join(texts_for(per_file, seed=k)) + "\n")
    out, marker = tmp_path / "out", tmp_path / "held"
    monkeypatch.setenv("EDGE_CLASSIFY_TEST_HOLD_ACTOR", str(marker))   # the actors inherit it
    before = bundle_copies()
    killed = []

    def killer():                       # the job runs in this (main) thread: it sets signal handlers
        deadline = time.monotonic() + 300
        while not marker.exists() and time.monotonic() < deadline:    # waits for the held actor
            time.sleep(0.05)
        if marker.exists():
            pid = int(marker.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=killer)
    thread.start()
    r = cli("-m", tiny_per_review[0], "--engine", "ray", "-o", out, data)
    thread.join(timeout=60)
    assert killed, f"no actor was held: {r.stderr[-2000:]}"
    assert r.exit_code == 0, r.stderr
    table = read_output(out, ["id"])
    ids = table["id"].to_pylist()
    assert len(ids) == n_files * per_file and len(set(ids)) == len(ids)
    assert set(ids) == {f"{data / f'part{k}.txt'}:{n}" for k in range(n_files) for n in range(1, per_file + 1)}
    assert bundle_copies() == before


def scorer_pids() -> list[int]:
    """The processes of the scoring actors (Ray titles them ray::MapWorker(MapBatches(_Scorer)))."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(
                    b"ray::MapWorker(MapBatches(_Scorer))\x00"):               # started, not in __init__
                pids.append(int(proc.name))
        except OSError:
            pass
    return sorted(pids)


def test_a_failed_ray_run_leaves_no_output_folder(tiny, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n[1, 2]\n')
    out = tmp_path / "out"
    r = cli("-m", tiny[0], "--engine", "ray", "-o", out, bad)
    assert r.exit_code == 2 and r.stderr.strip().splitlines()[-1] == \
        f"edge-classify: error: {bad}, line 2: expected a JSON object, got list"
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["bad.jsonl"]
    rejects = tmp_path / "rejects.jsonl"
    r = cli("-m", tiny[0], "--engine", "ray", "--on-error", "skip", "--rejects", rejects, "-o", out, bad)
    assert r.exit_code == 4 and "1 of 2 records rejected" in r.stderr
    assert [json.loads(x) for x in rejects.read_text().splitlines()] == [
        {"source": str(bad), "line": 2, "error": "expected a JSON object, got list"}]
    table = read_output(out).to_pylist()
    assert sorted((x["line"], x["label"] is None, x["error"] is None) for x in table) == [(1, False, True),
                                                                                          (2, True, False)]
    r = cli("-m", tiny[0], "--engine", "ray", "-o", out, bad)
    assert r.exit_code == 2 and "exists; --engine ray writes a new folder" in r.stderr
    r = cli("-m", tiny[0], "--engine", "ray", "--format", "csv", "-o", tmp_path / "o2", bad)
    assert r.exit_code == 2 and "writes --format parquet (the default) or jsonl" in r.stderr


def test_progress_lines_count_the_rows_written_so_far(tmp_path, monkeypatch):
    from review_classifier.edge import ray_engine

    said, two_lines = [], threading.Event()

    def say(line: str) -> None:
        said.append(line)
        if len(said) >= 2:
            two_lines.set()

    pq.write_table(pa.table({"id": ["a", "b", "c"]}), tmp_path / "x.parquet")
    (tmp_path / "half.parquet").write_bytes(b"PAR1 not finished")         # still being written
    reporter = ray_engine._ProgressLines(tmp_path, "parquet", say, every=0.05)
    assert two_lines.wait(timeout=120)   # acts once two lines were said, however slow the machine
    reporter.stop()
    assert said and all(line.startswith("ray: 3 records written so far (") for line in said)
    (tmp_path / "y.json").write_text('{"a": 1}\n{"a": 2}\n')
    assert ray_engine._ProgressLines(tmp_path, "jsonl", said.append, every=60).rows() == 2


def test_a_missing_column_is_one_line_before_the_job_starts(tiny, tmp_path):
    """--id-column (or the text column) that a file lacks: one line from reading each file's first
    record in the driver, not the reading tasks' tracebacks; no output, nothing left behind."""
    data = tmp_path / "in.parquet"
    pq.write_table(pa.table({"review": ["good", "bad"], "stars": [5, 1]}), data)
    before = bundle_copies()
    for flags, expect in ((["--id-column", "nope"], "--id-column"), (["--text-column", "body"], "--text-column")):
        r = cli("-m", tiny[0], "--engine", "ray", "-o", tmp_path / "out", *flags, data)
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 2 and len(lines) == 1, r.stderr
        assert lines[0].startswith("edge-classify: error: ") and expect in lines[0] and str(data) in lines[0]
        assert "ray:" not in r.stderr                                    # the job never started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"] and bundle_copies() == before
