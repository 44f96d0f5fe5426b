"""What importing each heavy package, and each of the project's entry modules, costs: the
figures behind the lazy imports in the training package (each marked `# lazy:` with its reason).

Every import is timed in a fresh Python process (the operating system's file cache warm, no
module of the project or of the package loaded before), `--rounds` times in alternating order;
the median is kept. Writes results/import_times_<cpu class>.json and prints a markdown table.

    python -m benchmarks.import_times                    # the default modules, 5 rounds
    python -m benchmarks.import_times --module json --rounds 1 --output /tmp/x.json
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from benchmarks.baseline_tfidf import run_typer
from benchmarks.offline import go_offline
from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.provenance import cpu_slug, provenance

REPO = Path(__file__).resolve().parents[1]
MODULES = (
    # what the training CLI defers until a command needs it
    "torch", "transformers", "transformers.trainer", "onnx", "onnxruntime", "onnx_neural_compressor.quantization",
    "sklearn.linear_model", "cleanlab.filter", "datasets", "matplotlib.pyplot",
    # the project's entry points: the two CLIs, the stages a command imports
    "review_classifier.training.cli", "review_classifier.training.config.settings",
    "review_classifier.training.pipeline", "review_classifier.training.audit.label_issues",
    "review_classifier.edge.cli",
)
PACKAGES = ("torch", "transformers", "onnxruntime", "onnx-neural-compressor", "scikit-learn", "cleanlab")
TIMER = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def time_import(module: str) -> float:
    """Seconds `import module` takes in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", TIMER.format(module=module)], capture_output=True, text=True,
                          cwd=REPO, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"import {module} failed: {done.stderr.strip().splitlines()[-1:]}")
    return float(done.stdout.strip().splitlines()[-1])


def measure(modules: list[str], rounds: int) -> dict[str, dict]:
    """{module: {median_s, each_s}}; each round times every module once, in turn (a slow spell of a
    shared machine then hits them all)."""
    each: dict[str, list[float]] = {m: [] for m in modules}
    for r in range(rounds):
        order = modules if r % 2 == 0 else modules[::-1]
        for m in order:
            each[m].append(time_import(m))
    return {m: {"median_s": statistics.median(t), "each_s": [round(x, 4) for x in t]} for m, t in each.items()}


def markdown(result: dict) -> str:
    lines = ["| import | seconds (median) |", "| --- | ---: |"]
    lines += [f"| `{m}` | {r['median_s']:.2f} |" for m, r in result["imports"].items()]
    mach = result["provenance"]["machine"]
    lines.append(f"\n{result['rounds']} round(s), each import in a fresh process; {mach.get('cpu')} "
                 f"({', '.join(mach.get('isa', []))}), {mach.get('cpus')} CPUs")
    return "\n".join(lines)


def main(module: Optional[list[str]] = typer.Option(None, "--module", help="Time these instead of the default list"),
         rounds: int = typer.Option(5, "--rounds", min=1),
         output: Optional[Path] = typer.Option(None, "--output", help="Default: results/import_times_<cpu>.json")) -> None:
    go_offline()
    modules = list(module or MODULES)
    result = {"imports": measure(modules, rounds), "rounds": rounds,
              "how": "each import timed in a fresh process (perf_counter around the import statement); median of the rounds",
              "provenance": provenance(packages=PACKAGES)}
    atomic_write_text(output or REPO / "results" / f"import_times_{cpu_slug()}.json", json.dumps(result, indent=2) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    run_typer(main, "bench-imports")
