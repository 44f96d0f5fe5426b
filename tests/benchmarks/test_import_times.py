"""bench-imports: each import timed in its own fresh process, medians and provenance written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.import_times import REPO, measure, time_import


def test_an_import_is_timed_in_a_fresh_process():
    # a module this process has loaded already still costs its import time there
    assert "json" in sys.modules and time_import("json") > 0
    with pytest.raises(RuntimeError, match="import no_such_module_here failed"):
        time_import("no_such_module_here")


def test_rounds_alternate_and_the_median_is_kept():
    result = measure(["json", "csv"], rounds=3)
    for r in result.values():
        assert len(r["each_s"]) == 3 and r["median_s"] == pytest.approx(sorted(r["each_s"])[1], abs=1e-4)


def test_the_command_writes_its_json(tmp_path):
    out = tmp_path / "imports.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.import_times", "--module", "json", "--rounds", "1",
                           "--output", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["rounds"] == 1 and result["imports"]["json"]["median_s"] > 0
    assert result["provenance"]["machine"]["cpu"] and "| `json` |" in done.stdout


def test_the_justfile_passes_arguments_intact(tmp_path):
    """`./dev RECIPE ARGS`: an argument with spaces and parentheses (a --note, a path) reaches the
    command as one word (the recipes once pasted ARGS into the shell line unquoted)."""
    bin_dir = Path(sys.executable).parent   # the recipes run `python`: this environment's, as under ./dev
    out = tmp_path / "a (b) c.json"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(bin_dir / "just"), "--justfile", str(REPO / "Justfile"), "bench-imports", "--module",
                           "json", "--rounds", "1", "--output", str(out)], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["imports"]["json"]["median_s"] > 0
