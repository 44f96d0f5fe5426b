"""Long reviews: one input (head+tail) against windows over the whole text, by length bucket.

Scores the same IMDB test reviews with one bundle under each `windows` setting, side by side in
one process (each setting its own EdgeClassifier, so its own onnxruntime session), and reports
accuracy per token-length bucket and reviews/s per setting, with the machine's CPU:

    python -m benchmarks.bench_long --n 4000 --windows 1 2 4    # -> results/bench_long_<cpu>.json, .png

Reviews no longer than max_length get the same input under every setting, so their bucket
shows identical accuracy; the difference is all in the longer buckets.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.provenance import cpu_slug, data_file, provenance
from review_classifier.shared.text import normalize_text

EDGES = (256, 384, 512, 768)   # bucket upper bounds in tokens (specials included); the last is open
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb" / "test.csv.gz"


def read_labelled(path: Path, n: int, seed: int, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """A seeded random sample of n rows (all rows when n is 0)."""
    csv.field_size_limit(2**31 - 1)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        rows = [(r[text_column], r[label_column]) for r in csv.DictReader(f)]
    if n and n < len(rows):
        idx = np.random.default_rng(seed).choice(len(rows), n, replace=False)
        rows = [rows[i] for i in sorted(idx)]
    return [t for t, _ in rows], [y for _, y in rows]


def bucket_names() -> list[str]:
    lows = (0,) + EDGES
    return [f"{lo + 1}-{hi}" for lo, hi in zip(lows, EDGES)] + [f">{EDGES[-1]}"]


def main(argv: list[str] | None = None) -> None:
    from review_classifier.edge.locate import locate_bundle
    from review_classifier.edge.model import EdgeClassifier

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="bundle [default: the shipped model]")
    p.add_argument("--data", type=Path, default=DATA, help="labelled CSV(.gz) [default: ../shared/data/imdb/test.csv.gz]")
    p.add_argument("--n", type=int, default=4000, help="reviews sampled (seed --seed); 0 = all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--windows", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="[default: results/bench_long_<cpu>.json]")
    args = p.parse_args(argv)

    bundle = locate_bundle(args.model)[0]
    base = EdgeClassifier(bundle, threads=args.threads, windows=1)
    data = base.manifest.data or {}
    texts, gold = read_labelled(args.data, args.n, args.seed, data.get("text_column", "review"),
                                data.get("label_column", "sentiment"))
    aliases = {**{name: name for name in base.labels}, **(data.get("label_aliases") or {})}
    y = np.array([base.labels.index(aliases.get(g, g)) for g in gold])
    policy = base.policy
    m = base.manifest
    lengths = np.array([len(e.ids) + len(m.prefix_ids) + len(m.suffix_ids) for e in
                        base._tokenizer.encode_batch([normalize_text(t, policy) for t in texts], add_special_tokens=False)])
    bucket = np.searchsorted(np.array(EDGES), lengths, side="left")
    names = bucket_names()
    print(f"{len(texts)} reviews from {args.data}; tokens p50 {np.percentile(lengths, 50):.0f}, p90 "
          f"{np.percentile(lengths, 90):.0f}, max {lengths.max()}; bundle {bundle}", file=sys.stderr)

    results = {}
    for w in args.windows:
        clf = EdgeClassifier(bundle, threads=args.threads, windows=w)
        clf.predict_proba(texts[:32])                         # warm-up (session, allocator)
        t0 = time.perf_counter()
        probs = clf.predict_proba(texts)
        seconds = time.perf_counter() - t0
        pred = probs.argmax(-1)
        inputs = sum(len(x) for x in clf.encode(texts))
        per_bucket = {}
        for b, name in enumerate(names):
            sel = bucket == b
            if sel.any():
                per_bucket[name] = {"reviews": int(sel.sum()), "accuracy": float((pred[sel] == y[sel]).mean())}
        results[str(w)] = {"windows": w, "accuracy": float((pred == y).mean()), "reviews_per_s": len(texts) / seconds,
                           "seconds": round(seconds, 2), "model_inputs": int(inputs), "by_length": per_bucket}
        print(f"windows {w}: accuracy {results[str(w)]['accuracy']:.4f}  {len(texts) / seconds:.1f} reviews/s  "
              f"({inputs} model inputs)", file=sys.stderr)
    first = results[str(args.windows[0])]
    for r in results.values():
        r["speed_vs_first"] = round(r["reviews_per_s"] / first["reviews_per_s"], 3)

    slug = cpu_slug()
    out = args.out or Path(f"results/bench_long_{slug}.json")
    report = {
        "what": "one bundle, IMDB test reviews, accuracy by token length (specials included) under each windows setting",
        "bundle": {"path": str(bundle), "base_model": m.base_model_name, "precision": m.precision,
                   "max_length": policy.max_length, "truncation": policy.truncation,
                   "window_overlap": policy.window_overlap},
        "reviews": len(texts), "sample_seed": args.seed,
        "length_buckets": {name: int((bucket == b).sum()) for b, name in enumerate(names)},
        "results": results,
        "provenance": provenance({"test": data_file(args.data)},
                                 packages=("review-classifier", "onnxruntime", "tokenizers", "numpy")),
    }
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    plot(report, out.with_suffix(".png"))
    print(f"-> {out}", file=sys.stderr)


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["length_buckets"])
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(report["results"])
    for i, (w, r) in enumerate(report["results"].items()):
        acc = [r["by_length"].get(n, {}).get("accuracy", np.nan) for n in names]
        ax.bar(np.arange(len(names)) + i * width, acc, width,
               label=f"windows {w} ({r['reviews_per_s']:.1f} reviews/s)")
    ax.set_xticks(np.arange(len(names)) + width * (len(report["results"]) - 1) / 2)
    ax.set_xticklabels([f"{n}\n({report['length_buckets'][n]} reviews)" for n in names])
    ax.set_xlabel("review length in tokens")
    ax.set_ylabel("accuracy")
    lo = min(r2["accuracy"] for r in report["results"].values() for r2 in r["by_length"].values())
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.legend(loc="lower left")
    machine = report["provenance"]["machine"]
    ax.set_title(f"{report['bundle']['base_model']} {report['bundle']['precision']}, max_length "
                 f"{report['bundle']['max_length']}: {report['reviews']} IMDB test reviews\n"
                 f"{machine['cpu']} ({', '.join(machine['isa']) or 'no AVX'}), {machine['cpus']} CPUs", fontsize=9)
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
