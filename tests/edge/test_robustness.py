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

from edge.cli import app
from edge.model import EdgeClassifier

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
                if name.split(".")[0] in ("torch", "transformers", "training"):
                    raise ImportError("edge must not import " + name)
        sys.meta_path.insert(0, Block())
        import edge.cli, edge.model, edge.classify, edge.records, edge.output
        from edge.model import EdgeClassifier
        p = EdgeClassifier({str(tiny[0])!r}).predict_proba(["works"])
        assert p.shape == (1, 2)
        sys.argv = ["edge-classify", "-m", {str(tiny[0])!r}, "-"]
        try:
            edge.cli.main()
        except SystemExit as e:
            assert e.code == 0, e.code
        heavy = [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "training", "pandas")]
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
                    assert name.split(".")[0] not in ("torch", "transformers", "training", "pandas"), (path, name)
