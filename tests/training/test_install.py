"""`pip install . ./training`: the two distributions built as wheels from a copy of the sources
(not the editable checkout) and installed together, one namespace, folder path = import path."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "training" / "review_classifier" / "training"
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """Both wheels, built without build isolation (setuptools is already here; no network)."""
    root = tmp_path_factory.mktemp("wheels")
    src = root / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copy(REPO / "README.md", src)
    for folder in ("shared", "edge", "training"):
        shutil.copytree(REPO / folder, src / folder, ignore=SKIP)
    out = root / "dist"
    for project in (src, src / "training"):
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "-w", str(out), str(project)],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    found = {w.name.split("-")[0]: w for w in out.glob("*.whl")}
    assert set(found) == {"review_classifier", "review_classifier_train"}, found
    return found


def _modules(package: Path) -> set[str]:
    return {p.relative_to(package.parents[1]).as_posix() for p in package.rglob("*.py")
            if "__pycache__" not in p.parts}


def test_the_training_wheel_holds_exactly_the_package_tree_and_its_recipes(wheels):
    names = set(zipfile.ZipFile(wheels["review_classifier_train"]).namelist())
    files = {n for n in names if ".dist-info/" not in n}
    assert {n for n in files if n.endswith(".py")} == _modules(PACKAGE)     # every module, at its folder path
    recipes = {f"review_classifier/training/config/recipes/{p.name}" for p in (PACKAGE / "config" / "recipes").glob("*.toml")}
    assert recipes and recipes <= files
    assert all(n.startswith("review_classifier/training/") for n in files), sorted(files)[:5]
    assert "review_classifier/__init__.py" not in files                      # a namespace shared with the edge
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "train-classify = review_classifier.training.cli:main" in zipfile.ZipFile(
        wheels["review_classifier_train"]).read(entry).decode()


def test_the_edge_wheel_holds_edge_and_shared_only(wheels):
    files = {n for n in zipfile.ZipFile(wheels["review_classifier"]).namelist() if ".dist-info/" not in n}
    tops = {n.split("/")[1] for n in files if n.startswith("review_classifier/")}
    assert tops == {"edge", "shared"} and files == {n for n in files if n.startswith("review_classifier/")}
    assert "review_classifier/edge/default_model/manifest.json" in files


def test_both_wheels_installed_together_run_train_classify_from_the_installed_tree(wheels, tmp_path):
    """A fresh venv with the two wheels; their dependencies come from this environment's
    site-packages through a plain path entry (which runs none of its .pth files, so the
    checkout's editable installs stay out)."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                        *map(str, wheels.values())], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    probe = ("import review_classifier.training.fit.loop as m, review_classifier.edge.model as e, "
             "review_classifier.training.config.settings as s; print(m.__file__); print(e.__file__); "
             "print(s.recipe_path('tiny'))")
    r = subprocess.run([py, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    loop_file, edge_file, tiny = r.stdout.splitlines()
    assert Path(loop_file) == site / "review_classifier" / "training" / "fit" / "loop.py"
    assert Path(edge_file) == site / "review_classifier" / "edge" / "model.py"
    assert Path(tiny) == site / "review_classifier" / "training" / "config" / "recipes" / "tiny.toml"
    r = subprocess.run([env_dir / "bin" / "train-classify", "--help"], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and "export" in r.stdout and "distill" in r.stdout, r.stderr[-2000:]
