"""`pip install .` (no extras) gives a working edge runtime without torch or transformers."""
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "datasets", "optimum", "pandas")


@pytest.fixture(scope="module")
def slim_env(tmp_path_factory):
    """A fresh venv with the project installed from a copy of its sources (non-editable)."""
    root = tmp_path_factory.mktemp("slim")
    src = root / "src"                         # a copy, so parallel runs never share build/ in the checkout
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    for extra in ("README.md", "LICENSE"):
        if (REPO / extra).exists():
            shutil.copy(REPO / extra, src)
    if not (src / "README.md").exists():
        (src / "README.md").write_text("review-classifier\n")
    for pkg in ("shared", "edge"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    pip = subprocess.run([env_dir / "bin" / "python", "-m", "pip", "install", "-q",
                          "--disable-pip-version-check", str(src)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return env_dir


def test_slim_install_has_no_torch_and_classifies(slim_env, tiny):
    py = slim_env / "bin" / "python"
    installed = subprocess.run([py, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
                               capture_output=True, text=True).stdout.lower()
    names = {line.split("==")[0] for line in installed.splitlines()}
    assert {"onnxruntime", "tokenizers", "numpy", "click", "tqdm", "review-classifier"} <= names
    assert not names & set(HEAVY), names & set(HEAVY)
    probe = subprocess.run([py, "-c", "import torch"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "EDGE_CLASSIFY", "VIRTUAL_ENV"))}
    env["EDGE_CLASSIFY_MODEL"] = str(tiny[0])
    slim = subprocess.run([slim_env / "bin" / "edge-classify", "-"], input="good movie\nbad film\n",
                          capture_output=True, text=True, env=env, timeout=120, cwd=slim_env)
    assert slim.returncode == 0, slim.stderr
    here = subprocess.run([Path(sys.executable).with_name("edge-classify"), "-"], input="good movie\nbad film\n",
                          capture_output=True, text=True, env=env, timeout=120)
    assert slim.stdout == here.stdout and len(slim.stdout.splitlines()) == 2


def test_slim_install_has_only_commands_that_run_and_no_generic_top_level_names(slim_env):
    bin_dir = slim_env / "bin"
    assert (bin_dir / "edge-classify").is_file() and not (bin_dir / "train-classify").exists()
    site = next((slim_env / "lib").glob("python3*/site-packages"))
    ours = {p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth")) and p.name != "__pycache__"}
    assert not ours & {"edge", "shared", "training", "benchmarks", "tests"}, ours
    pkg = site / "review_classifier"
    assert sorted(p.name for p in pkg.iterdir() if p.name != "__pycache__") == ["edge", "shared"]
    assert (pkg / "edge" / "default_model" / "manifest.json").is_file()      # the shipped model travels
    names = subprocess.run([slim_env / "bin" / "python", "-m", "pip", "show", "-f", "review-classifier"],
                           capture_output=True, text=True).stdout
    requires = next(line for line in names.splitlines() if line.startswith("Requires:"))
    assert "torch" not in requires and "typer" not in requires


def test_slim_install_scores_with_the_shipped_default_and_no_flags(slim_env, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "EDGE_CLASSIFY", "VIRTUAL_ENV"))}
    env.update(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = subprocess.run([slim_env / "bin" / "edge-classify"], input="What a wonderful film\nA dull, lifeless mess.\n",
                       capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (good, p_good), (bad, p_bad) = [line.split("\t") for line in r.stdout.splitlines()]
    assert (good, bad) == ("positive", "negative") and float(p_good) > 0.8 and float(p_bad) > 0.8
    info = subprocess.run([slim_env / "bin" / "edge-classify", "--info"], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)
    assert info.returncode == 0 and "(shipped default)" in info.stdout and "IMDB test set: accuracy" in info.stdout


def test_the_ray_extra_pulls_in_no_torch_and_no_transformers():
    """`pip install .[ray]`: walk the extra's requirements through the installed distributions
    (markers and extras evaluated as pip would) and list everything it brings."""
    pytest.importorskip("ray")
    from importlib import metadata

    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[tuple[str, str]] = set()
    todo = [(r, "ray") for r in metadata.requires("review-classifier") or []]
    while todo:
        line, extra = todo.pop()
        req = Requirement(line)
        if req.marker and not req.marker.evaluate({**default_environment(), "extra": extra or ""}):
            continue
        name = canonicalize_name(req.name)
        for want in [""] + sorted(req.extras):
            if (name, want) in seen:
                continue
            seen.add((name, want))
            try:
                todo += [(r, want) for r in metadata.requires(name) or []]
            except metadata.PackageNotFoundError:
                pass
    names = {n for n, _ in seen}
    assert {"ray", "pyarrow", "onnxruntime", "tokenizers"} <= names
    assert not names & {"torch", "transformers", "datasets", "accelerate", "neural-compressor"}, sorted(names)
