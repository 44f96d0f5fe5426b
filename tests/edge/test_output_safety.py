"""Nothing a user gives is overwritten, and a failed write is one line: edge.paths and edge.resume."""
import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from review_classifier.edge.cli import app
from tests.edge.test_resume import env, start_held

EDGE_CLASSIFY = Path(sys.executable).with_name("edge-classify")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """The record of finished runs lives in the user's cache folder: a private one per test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _keep_sigterm():
    old = signal.getsignal(signal.SIGTERM)   # the command installs its own handler
    yield
    signal.signal(signal.SIGTERM, old)


def cli(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    (folder / "sub").mkdir()
    lines = folder / "reviews.txt"
    lines.write_text("".join(f"review {i} was good\n" for i in range(40)))
    labelled = folder / "labelled.csv"
    labelled.write_text("review,sentiment\n" + "".join(f"text {i},{'positive' if i % 2 else 'negative'}\n"
                                                       for i in range(40)))
    return {"lines": lines, "csv": labelled}


def derived(flag: str, path: Path) -> list[Path]:
    """The files a flag's path brings with it (README, "Long jobs")."""
    if flag == "-o":
        return [path, Path(f"{path}.partial"), Path(f"{path}.partial.json"), path.with_name(f".{path.name}.lock")]
    return [path, Path(f"{path}.partial")] if flag == "--rejects" else [path]


def same(a: Path, b: Path) -> bool:
    """One file under two names: the same real path, or the same inode (a hard link)."""
    return os.path.realpath(a) == os.path.realpath(b) or (a.exists() and b.exists() and os.path.samefile(a, b))


def spellings(path: Path, folder: Path, k: int) -> Path:
    """The same file under another name: as given, `sub/../`, absolute, a symlink, a hard link."""
    kind = k % 5
    if kind == 0:
        return path
    if kind == 1:
        return folder / "sub" / ".." / path.name
    if kind == 2:
        return path.resolve()
    link = folder / f"link{k}-{path.name}"
    if not link.exists() and not link.is_symlink():
        (os.symlink if kind == 3 else os.link)(path, link)
    return link


def test_random_paths_never_change_an_input(tiny, tmp_path):
    """Random inputs, --output, --rejects and --eval-json, some of them an input or each other
    under another spelling (links included): a clash is refused with one line and exit 2 before
    anything is opened, and no input's sha256 ever changes."""
    rng = random.Random(20261204)
    folder = tmp_path / "w"
    files = make_inputs(folder)
    originals = {p: p.read_bytes() for p in files.values()}
    refused = 0
    for trial in range(60):
        for path, data in originals.items():   # a run may legitimately overwrite a file it does not read
            path.write_bytes(data)
        evaluate = rng.random() < 0.3
        sources = [files["csv"]] if evaluate else rng.sample(list(files.values()), rng.randint(1, 2))
        fresh = folder / f"out{trial}.tsv"
        targets = {}
        for flag in ("-o", "--rejects", "--eval-json"):
            if flag == "--eval-json" and not evaluate or rng.random() < 0.3:
                continue
            pick = rng.random()
            if pick < 0.45:
                targets[flag] = spellings(rng.choice(list(files.values())), folder, rng.randrange(100))
            elif pick < 0.6 and targets:
                other = rng.choice(list(targets.values()))
                targets[flag] = folder / "sub" / ".." / other.name if other.parent == folder else other
            else:
                targets[flag] = fresh.with_suffix(f".{flag.strip('-')}")
        args = ["-m", tiny[0], *sources]
        for flag, path in targets.items():
            args += [flag, path]
        if "--rejects" in targets:
            args += ["--on-error", "skip"]
        if evaluate:
            args.append("--eval")
        before = {p: digest(p) for p in sources}
        r = cli(*args)
        written = [w for flag, t in targets.items() for w in derived(flag, t)]
        clash = any(same(w, p) for w in written for p in sources) or \
            any(same(a, b) for i, a in enumerate(written) for b in written[i + 1:])
        if clash:
            refused += 1
            assert r.exit_code == 2, (args, r.stderr)
            last = r.stderr.strip().splitlines()
            assert len(last) == 1 and ("same file as input" in last[0] or "are the same file" in last[0]), last
        else:
            assert r.exit_code in (0, 4), (args, r.stderr)
        assert {p: digest(p) for p in sources} == before, args
    assert refused >= 15                                  # the draw really tried clashes


@pytest.mark.parametrize("case", ["output", "eval-output", "rejects", "rejects-ray", "two-spellings", "partial",
                                  "hardlink", "symlink"])
def test_each_clash_is_named_and_touches_nothing(tiny, tmp_path, case):
    inputs = make_inputs(tmp_path / "w")
    lines, labelled = inputs["lines"], inputs["csv"]
    scores = tmp_path / "w" / "scores.tsv"
    args, expect = {
        "output": (["-o", lines, lines], f"--output {lines} is the same file as input {lines}"),
        "eval-output": (["--eval", "-o", labelled, labelled], f"--output {labelled} is the same file as input"),
        "rejects": (["-o", scores, "--on-error", "skip", "--rejects", lines, lines],
                    f"--rejects {lines} is the same file as input {lines}"),
        "rejects-ray": (["--engine", "ray", "-o", tmp_path / "dir", "--on-error", "skip", "--rejects", lines, lines],
                        f"--rejects {lines} is the same file as input {lines}"),
        "two-spellings": (["-o", scores, "--on-error", "skip", "--rejects", tmp_path / "w" / "sub" / ".." / "scores.tsv",
                           lines], "are the same file"),
        "partial": (["-o", scores, "--on-error", "skip", "--rejects", tmp_path / "w" / "scores.tsv.partial", lines],
                    "--output's .partial"),
        "hardlink": (["-o", tmp_path / "w" / "hard.txt", lines], "is the same file as input"),
        "symlink": (["-o", tmp_path / "w" / "soft.txt", lines], "is the same file as input"),
    }[case]
    if case == "hardlink":
        os.link(lines, tmp_path / "w" / "hard.txt")
    if case == "symlink":
        os.symlink(lines, tmp_path / "w" / "soft.txt")
    listing = sorted(p.name for p in (tmp_path / "w").iterdir())
    before = {p: digest(p) for p in inputs.values()}
    r = cli("-m", tiny[0], *args)
    assert r.exit_code == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and expect in r.stderr, r.stderr
    assert {p: digest(p) for p in inputs.values()} == before
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == listing and not (tmp_path / "dir").exists()


def test_stdout_appending_to_an_input_is_refused(tiny, tmp_path):
    """`edge-classify reviews.txt >> reviews.txt` would read its own output forever."""
    lines = make_inputs(tmp_path / "w")["lines"]
    before = digest(lines)
    with open(lines, "a") as out:
        p = subprocess.run([EDGE_CLASSIFY, "-m", tiny[0], lines], stdout=out, stderr=subprocess.PIPE,
                           env=env(10**9), timeout=120)
    assert p.returncode == 2 and b"stdout" in p.stderr and b"same file as input" in p.stderr
    assert digest(lines) == before


@pytest.mark.parametrize("stdin", [False, True])
def test_missing_folders_of_an_output_are_made(tiny, tmp_path, stdin):
    """-o DIR/x.tsv and --rejects DIR/r.jsonl where DIR does not exist: the folders are made
    (README, "Long jobs"), for a resumable run and for one from stdin alike."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"good\n\xff bad\nfine\n")
    out, rejects = tmp_path / "new" / "deeper" / "x.tsv", tmp_path / "other" / "r.jsonl"
    args = ["-m", tiny[0], "-o", out, "--on-error", "skip", "--rejects", rejects]
    r = cli(*args, input=src.read_bytes()) if stdin else cli(*args, src)
    assert r.exit_code == 4, r.stderr
    assert len(out.read_text().splitlines()) == 3 and len(rejects.read_text().splitlines()) == 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.tsv"]      # no partial, journal or lock left
    (tmp_path / "afile").write_text("x")
    r = cli("-m", tiny[0], "-o", tmp_path / "afile" / "x.tsv", src)
    assert r.exit_code == 2 and "is a file, not a folder" in r.stderr


def _limit_file_size(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_file_size_limit_is_one_line_and_the_partial_resumes(tiny_per_review, tmp_path):
    """-o under `ulimit -f` (EFBIG): one line naming the file and the reason, exit 5, the partial
    and its journal kept; the same command with --resume, the limit lifted, finishes the file
    byte for byte as an uninterrupted run."""
    src = tmp_path / "in.txt"
    src.write_text("".join(f"review number {i} is quite good\n" for i in range(3000)))
    args = [EDGE_CLASSIFY, "-m", tiny_per_review[0], "--format", "jsonl", "--top-k", "2", src]
    ref = tmp_path / "ref.jsonl"
    subprocess.run([*args, "-o", ref], check=True, env=env(10**9), timeout=300, capture_output=True)
    out = tmp_path / "out.jsonl"
    p = subprocess.run([*args, "-o", out], env=env(100), timeout=300, capture_output=True,
                       preexec_fn=_limit_file_size(ref.stat().st_size // 3))
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 5 and len(err) == 1, p.stderr.decode()
    assert err[0].startswith(f"edge-classify: error: cannot write {out}.partial: File too large; ")
    assert "the same command with --resume continues" in err[0]
    journal = json.loads((tmp_path / "out.jsonl.partial.json").read_text())
    assert 0 < journal["counters"]["records"] < 3000 and not out.exists()
    done = subprocess.run([*args, "-o", out, "--resume"], env=env(100), timeout=300, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert out.read_bytes() == ref.read_bytes()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["in.txt", "out.jsonl", "ref.jsonl"]


def test_a_write_error_from_stdin_input_writes_nothing(tiny, tmp_path):
    out = tmp_path / "out.tsv"
    p = subprocess.run([EDGE_CLASSIFY, "-m", tiny[0], "-o", out], input=b"a good film\n" * 4000,
                       env=env(10**9), timeout=300, capture_output=True, preexec_fn=_limit_file_size(20_000))
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 5 and len(err) == 1, p.stderr.decode()
    assert err[0] == f"edge-classify: error: cannot write --output {out}: File too large; nothing was written"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_on_stdout_is_one_line(tiny, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a good film\n" * 3000)
    with open("/dev/full", "w") as full:
        p = subprocess.run([EDGE_CLASSIFY, "-m", tiny[0], src], stdout=full, stderr=subprocess.PIPE,
                           env=env(10**9), timeout=300)
    assert p.returncode == 5
    assert p.stderr.decode() == "edge-classify: error: cannot write stdout: No space left on device\n"


def test_an_unreadable_journal_starts_over_without_resume(tiny, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("".join(f"text {i}\n" for i in range(30)))
    out = tmp_path / "out.tsv"
    (tmp_path / "out.tsv.partial").write_text("half a line")
    (tmp_path / "out.tsv.partial.json").write_text('{"identity": {"vers')        # truncated by a crash
    r = cli("-m", tiny[0], src, "-o", out, "--resume")
    assert r.exit_code == 2 and "cannot read the journal" in r.stderr
    r = cli("-m", tiny[0], src, "-o", out)
    assert r.exit_code == 0 and "note: discarding the unreadable journal" in r.stderr
    assert out.read_text() == cli("-m", tiny[0], src).stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.tsv"]


def test_resume_on_a_finished_output_checks_whose_it_is(tiny, tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(f"text {i}\n" for i in range(30)))
    b.write_text("".join(f"other {i} words here\n" for i in range(45)))
    out = tmp_path / "out.tsv"
    assert cli("-m", tiny[0], a, "-o", out).exit_code == 0
    r = cli("-m", tiny[0], a, "-o", out, "--resume")
    assert r.exit_code == 0 and "is complete (no unfinished run); nothing to do" in r.stderr
    r = cli("-m", tiny[0], b, "-o", out, "--resume")              # another run's finished file
    assert r.exit_code == 0 and "was not written by this run" in r.stderr and "starting from the beginning" in r.stderr
    assert out.read_text() == cli("-m", tiny[0], b).stdout
    out.write_text(out.read_text().replace("positive", "negative", 1) + "")   # changed since
    r = cli("-m", tiny[0], b, "-o", out, "--resume")
    assert r.exit_code == 0 and "was not written by this run" in r.stderr
    assert out.read_text() == cli("-m", tiny[0], b).stdout
    assert cli("-m", tiny[0], "-o", out, input="from stdin\n").exit_code == 0   # not resumable: record gone
    r = cli("-m", tiny[0], b, "-o", out, "--resume")
    assert r.exit_code == 0 and "was not written by this run" in r.stderr


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(tiny, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("".join(f"text {i}\n" for i in range(5000)))
    out = tmp_path / "out.tsv"
    first, held = start_held([EDGE_CLASSIFY, "-m", tiny[0], src, "-o", out], 2048)
    try:
        assert held == 2048
        r = cli("-m", tiny[0], src, "-o", tmp_path / "sub" / ".." / "out.tsv")
        assert r.exit_code == 2 and r.stderr.strip() == (
            f"edge-classify: error: --output {tmp_path / 'sub' / '..' / 'out.tsv'} is being written by another "
            f"edge-classify run (process {first.pid}, lock {tmp_path / 'sub' / '..' / '.out.tsv.lock'}); "
            "wait for it or choose another file")
        assert (tmp_path / "out.tsv.partial.json").exists()                    # the first run's, untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        first.stderr.close()
    # a killed holder's lock is gone with its process: the next run takes it and resumes
    r = cli("-m", tiny[0], src, "-o", out, "--resume")
    assert r.exit_code == 0 and "resuming after 2,048 records" in r.stderr, r.stderr
    assert out.read_text() == cli("-m", tiny[0], src).stdout


def test_leftovers_of_a_killed_checkpoint_write_are_removed(tiny, tmp_path):
    """A SIGKILL inside the journal's atomic write leaves .FILE.partial.json.*.tmp/ behind; the
    next run of FILE removes it (and a temporary of the output's own atomic write)."""
    src = tmp_path / "in.txt"
    src.write_text("one\ntwo\n")
    out = tmp_path / "out.tsv"
    for name in (".out.tsv.partial.json.k1ll3d.tmp", ".out.tsv.x9.tmp"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "out.tsv.partial.json").write_text("{")
    r = cli("-m", tiny[0], src, "-o", out)
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.tsv"]
