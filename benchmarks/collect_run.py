"""Copy one training run's results into results/ for the results table.

    python -m benchmarks.collect_run runs/imdb-default --name imdb [--note "how it was run"]

Writes results/<name>_train.json (the run's results.json, plus the model size, batch size, the
training wall time summed from the per-step TensorBoard events across stops and resumes, and the
note), results/<name>_curves.png and results/<name>_confusion.png.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from review_classifier.shared.atomic import atomic_path, atomic_write_text
from review_classifier.shared.errors import ClassifierError


def collect(run: Path, name: str, note: str, results: Path, reproduce: str = "") -> Path:
    from review_classifier.training.fit.plots import timed_steps

    src = run / "results.json"
    if not src.is_file():
        raise ClassifierError(f"{src}: no results.json (has the run finished its test evaluation?)")
    data = json.loads(src.read_text(encoding="utf-8"))
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    weights = Path(data["best_dir"]) / "model.safetensors"
    timing = timed_steps(run / "tb")
    steps = data["history"][-1]["step"] if data.get("history") else 0
    timing["epoch_seconds_estimate"] = (round(timing["seconds_per_step"] * steps / max(1, data["epochs_run"]), 1)
                                        if timing["seconds_per_step"] else None)
    chosen = json.loads((run / "precision.json").read_text()) if (run / "precision.json").is_file() else {}
    data.update(precision_used=chosen.get("used") or config.get("precision"), batch_size=config["batch_size"], model_bytes=weights.stat().st_size if weights.is_file() else None,
                train_timing=timing, train_note=note)
    if reproduce:   # the plain command, where the recorded one was a workaround (e.g. on a lent GPU)
        data["reproduce"] = reproduce
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"{name}_train.json"
    atomic_write_text(out, json.dumps(data, indent=2) + "\n")
    for plot in ("curves", "confusion"):
        if (run / f"{plot}.png").is_file():
            with atomic_path(results / f"{name}_{plot}.png") as tmp:
                shutil.copyfile(run / f"{plot}.png", tmp)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the run's output_dir")
    ap.add_argument("--name", required=True, help="prefix of the files written in results/")
    ap.add_argument("--note", default="", help="how the run was made (kept in the JSON and the table)")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--reproduce", default="", help="the command that reproduces the run on a normal install, "
                    "when the recorded one differs (kept beside it)")
    args = ap.parse_args(argv)
    try:
        out = collect(args.run, args.name, args.note, args.results, args.reproduce)
    except ClassifierError as e:
        print(f"collect_run: error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
