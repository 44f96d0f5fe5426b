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
    for pkg in ("shared", "edge", "training"):
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
