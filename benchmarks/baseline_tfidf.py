"""TF-IDF (unigrams + bigrams) + logistic regression on the same splits as the training job.

The yardstick every fine-tuned model has to beat. It uses training.data.splits.load_splits, so its
train/valid/test are exactly those of a training run with the same config:

    python -m benchmarks.baseline_tfidf --train /work/shared/data/imdb/train.csv.gz \\
        --test /work/shared/data/imdb/test.csv.gz --out results/baseline_tfidf.json
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import typer

from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.provenance import data_file, provenance
from review_classifier.training.config.settings import TrainConfig, load_config
from review_classifier.training.data.reviews import Reviews, data_fingerprint
from review_classifier.training.data.splits import load_splits
from review_classifier.training.audit.tfidf import make_vectorizer

C_GRID = (2.0, 4.0, 8.0, 16.0, 32.0)


def fit_baseline(splits: dict[str, Reviews], cs: tuple[float, ...] = C_GRID, min_df: int = 2,
                 seed: int = 0) -> dict:
    """Fit on splits["train"] for each C, keep the C with the best valid accuracy (the smallest
    on ties; the first without a valid split), then score it on valid and test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    t0 = time.perf_counter()
    vec = make_vectorizer(min_df)
    x_train = vec.fit_transform(splits["train"].texts)
    x_valid = vec.transform(splits["valid"].texts) if len(splits["valid"]) else None
    y_valid = np.asarray(splits["valid"].labels)
    t1 = time.perf_counter()
    best, best_acc, valid_by_c = None, -1.0, {}
    for c in cs:
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_train, splits["train"].labels)
        if x_valid is None:
            best = clf
            break
        acc = float(accuracy_score(y_valid, clf.predict(x_valid)))
        valid_by_c[str(c)] = acc
        if acc > best_acc:
            best, best_acc = clf, acc
    t2 = time.perf_counter()
    scores: dict = {"C": float(best.C), "valid_accuracy_by_C": valid_by_c}
    for name in ("valid", "test"):
        if not len(splits[name]):
            continue
        pred = best.predict(x_valid if name == "valid" else vec.transform(splits[name].texts))
        y = np.asarray(splits[name].labels)
        scores[name] = {"accuracy": float(accuracy_score(y, pred)),
                        "macro_f1": float(f1_score(y, pred, average="macro")), "rows": int(len(y))}
    return {**scores, "features": int(len(vec.vocabulary_)),
            "seconds": {"vectorize": round(t1 - t0, 2), "fit_and_select": round(t2 - t1, 2),
                        "predict": round(time.perf_counter() - t2, 2)}}


def provenance_of(cfg: TrainConfig) -> dict:
    """Command line, git commit, package versions, machine and data files behind the numbers."""
    data = {"train": data_file(cfg.data), **({"test": data_file(cfg.test_data)} if cfg.test_data else {})}
    return provenance(data, packages=("review-classifier", "scikit-learn", "scipy", "numpy"))


def run_baseline(cfg: TrainConfig, cs: tuple[float, ...] = C_GRID, min_df: int = 2) -> dict:
    splits = load_splits(cfg)
    results = fit_baseline(splits, cs=cs, min_df=min_df, seed=cfg.seed)
    return {
        "model": {"features": "tfidf word 1-2 grams, sublinear tf, lowercase, <br /> removed",
                  "min_df": min_df, "classifier": "LogisticRegression",
                  "C": results["C"], "C_grid": list(cs), "C_chosen_on": "valid accuracy"},
        "results": results,
        "splits": {k: len(v) for k, v in splits.items()},
        "data_fingerprint": data_fingerprint(splits),
        "config": {k: getattr(cfg, k) for k in ("data", "test_data", "text_column", "label_column", "labels",
                                                "valid_size", "test_size", "reduce_ratio", "dedupe", "seed")},
        "provenance": provenance_of(cfg),
    }


def main(train: str = typer.Option(..., "--train", help="Training data (any source load_reviews accepts)"),
         test: str = typer.Option("", "--test", help="Test data; empty: split test_size off --train"),
         out: Path = typer.Option(Path("results/baseline_tfidf.json"), "--out"),
         recipe: str = typer.Option("default", "--recipe", help="Config recipe for the split settings"),
         set_: list[str] = typer.Option([], "--set", "-s", help="Config overrides, e.g. --set seed=1"),
         c: list[float] = typer.Option(list(C_GRID), "--c", help="Inverse regularisation strength(s); "
                                       "with several, the best on the valid split is used"),
         min_df: int = typer.Option(2, "--min-df", help="Ignore n-grams seen in fewer documents")) -> None:
    """Fit the TF-IDF baseline and write its scores and provenance as JSON."""
    cfg = load_config(recipe, [*set_, f"data={train}", f"test_data={test}"])
    report = run_baseline(cfg, cs=tuple(c), min_df=min_df)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    r = report["results"]
    line = f"valid accuracy {r['valid']['accuracy']:.4f}" if "valid" in r else ""
    typer.echo(f"C {r['C']:g}  {line}  test accuracy {r['test']['accuracy']:.4f}  macro F1 {r['test']['macro_f1']:.4f}  -> {out}")


def run_typer(main, prog: str) -> None:
    """A benchmark's typer command; a ClassifierError is one line on stderr and its exit code."""
    try:
        typer.run(main)
    except ClassifierError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


def cli() -> None:
    run_typer(main, "baseline_tfidf")


if __name__ == "__main__":
    cli()
