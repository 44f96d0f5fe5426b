"""edge-classify against hostile input and environments: bytes, pipes, signals, memory, network."""
import ast
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from review_classifier.edge.cli import app
from review_classifier.edge.model import EdgeClassifier

REPO = Path(__file__).resolve().parents[2]
EDGE_CLASSIFY = Path(sys.executable).with_name("edge-classify")


def subprocess_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_CLASSIFY", "PYTEST"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


@pytest.fixture(autouse=True)
def _keep_sigterm():
    old = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, old)


def cli(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def run_edge(args, *, stdin=None, env=None, timeout=120, prefix=()):
    """Run edge-classify as a real process; returns (CompletedProcess, peak RSS of the child in MB)."""
    code = textwrap.dedent("""
        import resource, subprocess, sys
        p = subprocess.run(sys.argv[1:], stdin=sys.stdin)
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, file=sys.stderr)
        sys.exit(p.returncode)
    """)
    cmd = [sys.executable, "-c", code, *prefix, str(EDGE_CLASSIFY), *map(str, args)]
    p = subprocess.run(cmd, input=stdin, capture_output=True, env=env or subprocess_env(), timeout=timeout)
    *err, rss = p.stderr.decode().rstrip("\n").split("\n")
    p.stderr = "\n".join(err)
    return p, int(rss)


def test_bom_crlf_and_nul_bytes_score_like_clean_text(tiny):
    clean = cli("-m", tiny[0], input="good movie\nbad film\n").stdout
    r = cli("-m", tiny[0], input=b"\xef\xbb\xbfgood movie\r\nbad film\r\n")
    assert r.exit_code == 0 and r.stdout == clean
    r = cli("-m", tiny[0], input=b"good\x00 movie\nbad\x00\x00film\n")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 2
    expected = EdgeClassifier(tiny[0]).predict_proba(["good  movie", "bad  film"])
    assert [float(x.split("\t")[1]) for x in r.stdout.splitlines()] == pytest.approx(
        expected.max(axis=1).tolist(), abs=1e-6)


def test_invalid_utf8_names_the_line_or_is_replaced(tiny):
    data = b"fine\nalso fine\nbroken \xc3\x28 here\nlast\n"
    r = cli("-m", tiny[0], input=data)
    assert r.exit_code == 2
    assert r.stderr.strip() == ("edge-classify: error: <stdin>, line 3: invalid UTF-8 (byte 0xc3 at column 8); "
                                "convert the file to UTF-8 or pass --errors replace")
    r = cli("-m", tiny[0], "--errors", "replace", input=data)
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 4
    assert r.stdout.splitlines()[2] == cli("-m", tiny[0], input="broken \ufffd( here\n").stdout.strip()


def test_ten_megabyte_line_is_clipped_with_bounded_memory(tiny, tmp_path):
    f = tmp_path / "huge.txt"
    f.write_bytes(b"short one\n" + b"great film " * 1_000_000 + b"\nlast\n")   # 11 MB line
    p, rss = run_edge(["-m", tiny[0], f])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 3
    expected = EdgeClassifier(tiny[0]).predict_proba(["great film " * 1_000_000])[0].max()
    assert float(lines[1].split("\t")[1]) == pytest.approx(expected, abs=1e-6)
    assert rss < 400, f"peak RSS {rss} MB for an 11 MB line"


def test_streaming_keeps_memory_flat(tiny):
    """60 MB of input must not cost more memory than 6 MB: the input is never held whole."""
    line = b"good " + b" " * 2000 + b"\n"                # 2 kB raw, a few tokens after normalisation
    small, rss_small = run_edge(["-m", tiny[0], "--batch-size", "256"], stdin=line * 3_000)
    big, rss_big = run_edge(["-m", tiny[0], "--batch-size", "256"], stdin=line * 30_000)
    assert small.returncode == big.returncode == 0
    assert big.stdout.count(b"\n") == 30_000
    assert rss_big - rss_small < 25, f"RSS grew from {rss_small} MB to {rss_big} MB"


@pytest.mark.parametrize("which", ["tiny", "tiny_per_review"])
def test_closed_pipe_ends_quietly(which, request, tmp_path):
    tiny = request.getfixturevalue(which)
    f = tmp_path / "many.txt"
    f.write_text("".join(f"review number {i}\n" for i in range(20_000)))
    p = subprocess.Popen([EDGE_CLASSIFY, "-m", tiny[0], f], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=subprocess_env())
    first = p.stdout.readline()
    p.stdout.close()                                    # like `| head -1`
    rc = p.wait(timeout=120)
    err = p.stderr.read().decode()
    assert first.count(b"\t") == 1
    assert rc == 0 and err == "", err
    shell = subprocess.run(["bash", "-c", f"'{EDGE_CLASSIFY}' -m '{tiny[0]}' '{f}' | head -n 2; "
                            "echo status=${PIPESTATUS[0]}"], capture_output=True, text=True,
                           env=subprocess_env(), timeout=120)
    assert shell.stdout.splitlines()[-1] == "status=0" and shell.stderr == ""


@pytest.mark.parametrize("which", ["tiny", "tiny_per_review"])
def test_ctrl_c_exits_130_and_leaves_no_partial_output(which, request, tmp_path):
    tiny = request.getfixturevalue(which)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    p = subprocess.Popen([EDGE_CLASSIFY, "-m", tiny[0], "-o", out_dir / "pred.tsv"], stdin=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=subprocess_env())
    p.stdin.write(b"a fine review\n" * 5000)            # more than one window: some output is written
    p.stdin.flush()                                     # ... and stdin stays open, so it waits for more
    deadline = time.monotonic() + 60
    while not any(out_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=60)
    err = p.stderr.read().decode()
    assert rc == 130
    assert err.strip() == "edge-classify: interrupted"
    assert list(out_dir.iterdir()) == []


def _no_network_shim(tmp_path: Path) -> Path:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(textwrap.dedent("""
        import socket
        def _refuse(*args, **kwargs):
            raise OSError("network access attempted (blocked by test)")
        class _NoSocket(socket.socket):
            def __init__(self, *args, **kwargs):
                _refuse()
        socket.socket = _NoSocket
        socket.create_connection = _refuse
        socket.getaddrinfo = _refuse
    """))
    return shim


def _unshare_works() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rn", "true"], capture_output=True).returncode == 0


@pytest.mark.parametrize("how", ["socket-shim", "unshare"])
def test_works_without_network(tiny, tmp_path, how):
    env = subprocess_env()
    prefix = ()
    if how == "socket-shim":
        env["PYTHONPATH"] = f"{_no_network_shim(tmp_path)}{os.pathsep}{env.get('PYTHONPATH', '')}"
        env["EDGE_CLASSIFY_MODEL"] = str(tiny[0])
    elif _unshare_works():
        prefix = ("unshare", "-rn")
        env["EDGE_CLASSIFY_MODEL"] = str(tiny[0])
    else:
        pytest.skip("unshare -rn is not available here")
    p, _ = run_edge([], stdin=b"good\nbad\n", env=env, prefix=prefix)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == cli("-m", tiny[0], input="good\nbad\n").stdout


def test_edge_imports_no_torch_transformers_or_training(tiny):
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers") or name.startswith("review_classifier.training"):
                    raise ImportError("edge must not import " + name)
        sys.meta_path.insert(0, Block())
        import review_classifier.edge.cli as cli, review_classifier.edge.model, review_classifier.edge.classify
        import review_classifier.edge.records, review_classifier.edge.output
        from review_classifier.edge.model import EdgeClassifier
        p = EdgeClassifier({str(tiny[0])!r}).predict_proba(["works"])
        assert p.shape == (1, 2)
        sys.argv = ["edge-classify", "-m", {str(tiny[0])!r}, "-"]
        try:
            cli.main()
        except SystemExit as e:
            assert e.code == 0, e.code
        heavy = [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "pandas")
                 or m.startswith("review_classifier.training")]
        assert not heavy, heavy
    """)
    p = subprocess.run([sys.executable, "-c", code], input=b"good\n", capture_output=True,
                       env=subprocess_env(), timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().count("\t") == 1


def test_edge_sources_never_mention_the_heavy_packages():
    for path in (REPO / "edge").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    assert name.split(".")[0] not in ("torch", "transformers", "pandas"), (path, name)
                    assert not name.startswith("review_classifier.training"), (path, name)


# ---- hostile input found by a suite kept outside the project (issue 15): each class of it

@pytest.mark.parametrize("kind", ["folder", "below-a-file", "broken-link", "fifo"])
def test_an_output_that_is_not_a_regular_file_is_refused_and_left_alone(tiny, tmp_path, kind):
    if kind == "folder":
        target = tmp_path / "results"
        (target / "keep").mkdir(parents=True)
        (target / "keep" / "data.txt").write_text("precious")
    elif kind == "below-a-file":
        (tmp_path / "afile").write_text("precious")
        target = tmp_path / "afile" / "out.tsv"
    elif kind == "broken-link":
        target = tmp_path / "link"
        target.symlink_to(tmp_path / "missing" / "x")
    else:
        target = tmp_path / "pipe"
        os.mkfifo(target)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    r = cli("-m", tiny[0], "-o", target, input="good\n")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "--output" in r.stderr, r.stderr
    assert "Traceback" not in r.output and r.stdout == ""
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    if kind == "folder":
        assert (target / "keep" / "data.txt").read_text() == "precious"
    if kind == "below-a-file":
        assert (tmp_path / "afile").read_text() == "precious"


def test_named_pipes_are_read_as_input_but_not_found_in_folders(tiny, tmp_path):
    import threading

    fifo = tmp_path / "texts"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("good\nbad\n"))
    writer.start()
    r = cli("-m", tiny[0], fifo)
    writer.join(timeout=10)
    assert r.exit_code == 0, r.stderr
    expect = EdgeClassifier(tiny[0], threads=1).predict(["good", "bad"])
    assert [line.split("\t")[0] for line in r.stdout.splitlines()] == [p.label for p in expect]
    r = cli("-m", tiny[0], tmp_path)   # a folder gives its regular files: a pipe there is no input
    assert r.exit_code == 2 and f"input folder {tmp_path} holds no files" in r.stderr


def test_closed_stdin_is_a_one_line_error(tiny):
    p = subprocess.run([EDGE_CLASSIFY, "-m", tiny[0]], stdin=subprocess.DEVNULL, capture_output=True,
                       env=subprocess_env(), timeout=60)
    assert p.returncode == 0 and p.stdout == b""                    # empty stdin: nothing to score
    p = subprocess.run(f"exec {EDGE_CLASSIFY} -m {tiny[0]} <&-", shell=True, capture_output=True,
                       env=subprocess_env(), timeout=60)
    assert p.returncode == 2 and p.stderr.decode() == \
        "edge-classify: error: stdin is closed; give FILE arguments or pipe texts in\n"


@pytest.mark.parametrize("body, line, message", [
    ('"good film,positive\nbad,negative\nok,positive\nfine,positive\n', 2, "never closed"),
    ('good,positive\n"bad" really,negative\nok,positive\n', 3, "malformed CSV"),
    ('good,positive\nbad,negative,extra\n', 3, "3 fields but the header has 2"),
])
def test_broken_csv_quoting_names_the_row_and_merges_nothing(tiny, tmp_path, body, line, message):
    f = tmp_path / "in.csv"
    f.write_text("review,sentiment\n" + body)
    out = tmp_path / "out.tsv"
    r = cli("-m", tiny[0], "--input-format", "csv", f, "-o", out)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"{f}, line {line}:" in r.stderr and message in r.stderr
    assert not out.exists()


def test_quoted_csv_fields_with_quotes_commas_and_newlines_still_read(tiny, tmp_path):
    f = tmp_path / "in.csv"
    f.write_text('review\n"a ""quoted"" word, and a comma"\n"two\nlines"\nplain\n')
    r = cli("-m", tiny[0], "--input-format", "csv", "--format", "jsonl", f)
    assert r.exit_code == 0, r.stderr
    texts = ['a "quoted" word, and a comma', "two\nlines", "plain"]
    expect = EdgeClassifier(tiny[0], threads=1).predict(texts)
    assert [__import__("json").loads(x)["label"] for x in r.stdout.splitlines()] == [p.label for p in expect]


def test_malformed_jsonl_lines_are_one_line_errors(tiny, tmp_path):
    cases = {
        "deep": ('{"text": ' + "[" * 100000 + "]" * 100000 + "}\n", "nested too deeply"),
        "surrogate": ('{"text": "bad \\ud800 half"}\n', "unpaired UTF-16 surrogate"),
        "scalar": ("42\n", "expected a JSON object, got int"),
        "cut": ('{"text": "a"}\n{"text": "b"\n', "line 2: not valid JSON"),
        "nonstring": ('{"text": ["a"]}\n', "non-string 'text' field"),
    }
    for name, (body, message) in cases.items():
        f = tmp_path / f"{name}.jsonl"
        f.write_text(body)
        r = cli("-m", tiny[0], "--input-format", "jsonl", f)
        assert r.exit_code == 2 and r.stderr.count("\n") == 1 and message in r.stderr, (name, r.stderr)
    r = cli("-m", tiny[0], "--input-format", "jsonl", "--errors", "replace", tmp_path / "surrogate.jsonl")
    expect = EdgeClassifier(tiny[0], threads=1).predict(["bad \ufffd half"])[0]
    assert r.exit_code == 0 and r.stdout.split("\t")[0] == expect.label


def test_manifest_labels_that_disagree_with_the_model_are_refused(tiny, tmp_path):
    import json

    bad = tmp_path / "bad"
    shutil.copytree(tiny[0], bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["labels"] = ["a", "b", "c"]
    (bad / "manifest.json").write_text(json.dumps(manifest))
    r = cli("-m", bad, input="good\n")
    assert r.exit_code == 3 and "names 3 labels" in r.stderr and "outputs 2 scores" in r.stderr


def _catches_sigint(pid: int) -> bool:
    """Whether the process has a handler for SIGINT (bit 2 of SigCgt in /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught & (1 << (signal.SIGINT - 1)))


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc")
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3])
def test_an_interrupt_at_start_up_ends_without_a_traceback(tiny, delay):
    """From the moment edge.cli is imported (Python's own SIGINT handler is dropped there; before
    that the interpreter is still starting, outside the project's code): no traceback, no output."""
    p = subprocess.Popen([EDGE_CLASSIFY, "-m", tiny[0]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=subprocess_env())
    seen_python_handler, deadline = False, time.monotonic() + 30
    while time.monotonic() < deadline:            # wait for Python's handler to appear, then go
        catching = _catches_sigint(p.pid)
        if seen_python_handler and not catching:
            break
        seen_python_handler |= catching
        time.sleep(0.002)
    time.sleep(delay)                             # later moments: loading the model, waiting on stdin
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode in (130, -signal.SIGINT), (p.returncode, err)
    assert b"Traceback" not in err and out == b""
    if p.returncode == 130:
        assert err == b"edge-classify: interrupted\n"


@pytest.mark.parametrize("chain", ["raised_from", "raised_while_handling"])
def test_an_interrupt_inside_an_import_ends_as_an_interrupt(monkeypatch, capsys, chain):
    """Ctrl-C while onnxruntime imports numpy reaches the command as an ImportError whose chain
    holds the KeyboardInterrupt: as `raise ImportError from` (onnxruntime's extension) or raised
    while handling it (numpy's own `except` block, seen on CI). Both end as an interrupt."""
    import review_classifier.edge.cli as cli

    def score(opts):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            if chain == "raised_from":
                raise ImportError("onnxruntime failed") from e
            raise ImportError("import numpy failed")

    monkeypatch.setattr(cli, "score", score)
    assert cli.run(None) == 130
    assert capsys.readouterr().err == "edge-classify: interrupted\n"


def test_an_import_error_without_an_interrupt_is_not_hidden(monkeypatch):
    import review_classifier.edge.cli as cli

    def score(opts):
        raise ImportError("no module named onnxruntime")

    monkeypatch.setattr(cli, "score", score)
    with pytest.raises(ImportError, match="no module named onnxruntime"):
        cli.run(None)
