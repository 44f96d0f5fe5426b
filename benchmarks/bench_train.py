"""Training throughput, side by side in one run on the same model and data (a benchmark, not a test).

    python -m benchmarks.bench_train [--steps 12] [--max-length 256] [--out results/bench_train_<cpu class>.json]
    python -m benchmarks.bench_train --accuracy [--steps 100] [--valid 500]   # does bf16 cost accuracy?

Variants: the manual loop in fp32 and bf16, each with length-grouped batches and with every
batch padded to max_length, against the Hugging Face Trainer (fp32 and bf16, group_by_length).
Goal: manual >= Trainer at the same precision; bf16 + length grouping >= 2x fp32 padded.
Every variant runs --repeats times, the variants alternating round by round (this shared machine
drifts by 5-10% between runs); the table takes each variant's median and keeps every run's rate.

`--accuracy` instead fine-tunes the manual loop from the same seed on the same reviews in fp32 and
in bf16 autocast (length-grouped), and in bf16 with torch's own dropout instead of FastDropout,
for --steps steps each, and compares validation accuracy and macro F1 on --valid held-out reviews
(results/bench_train_accuracy.json by default).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.provenance import provenance

VARIANTS = [  # name, engine, precision, grouped, pad_to_max, further config overrides
    ("manual fp32 padded", "manual", "fp32", False, True, ()),
    ("manual fp32 grouped", "manual", "fp32", True, False, ()),
    ("manual bf16 padded", "manual", "bf16", False, True, ()),
    ("manual bf16 grouped", "manual", "bf16", True, False, ()),
    ("trainer fp32 grouped", "trainer", "fp32", True, False, ()),
    ("trainer bf16 grouped", "trainer", "bf16", True, False, ()),
]


# --accuracy also trains with torch's own dropout, to show what FastDropout does to accuracy
ACCURACY_EXTRA = ("manual bf16 grouped, torch dropout", "manual", "bf16", True, False, ("fast_dropout=false",))


def measure(name, engine, precision, grouped, pad, extra: tuple[str, ...], args, tokenized, tokenizer,
            work: Path) -> dict:
    from review_classifier.training.config.settings import load_config
    from review_classifier.training.fit.loop import fit
    from review_classifier.training.fit.model import load_model
    from review_classifier.training.fit.trainer_engine import fit_with_trainer

    out = work / name.replace(" ", "-")
    cfg = load_config(args.recipe, [f"engine={engine}", f"precision={precision}", f"group_by_length={grouped}",
                                    f"pad_to_max={pad}", f"max_length={args.max_length}",
                                    f"batch_size={args.batch_size}", "epochs=1", f"max_steps={args.steps}",
                                    "patience=0", "tensorboard=false", f"output_dir={out}", "checkpoint_every=0", *extra])
    model = load_model(cfg)
    t0 = time.perf_counter()
    if engine == "trainer":
        res = fit_with_trainer(cfg, model, tokenized, out, tokenizer=tokenizer, log=lambda m: None)
        sps = res.samples_per_second
    else:
        res = fit(cfg, model, tokenized, out, tokenizer=tokenizer, log=lambda m: None)
        sps = res.history[-1]["samples_per_s"]
    row = {"variant": name, "engine": engine, "precision": precision, "length_grouped": grouped,
           "pad_to_max_length": pad, "samples_per_s": round(sps, 2), "wall_s": round(time.perf_counter() - t0, 1)}
    if res.history and res.history[-1].get("valid_accuracy") is not None:
        row.update(valid_accuracy=res.history[-1]["valid_accuracy"], valid_macro_f1=res.history[-1]["valid_macro_f1"])
    print(f"{name:<24} {row['samples_per_s']:>8.2f} samples/s", file=sys.stderr, flush=True)
    return row


def prepare(base, args):
    """The same n training reviews (a fixed random sample) and a small valid set for every variant."""
    from datasets import DatasetDict

    from review_classifier.training.data.splits import load_splits
    from review_classifier.training.data.tokenized import tokenize_splits
    from review_classifier.training.fit.model import load_tokenizer

    splits = load_splits(base)
    tokenizer = load_tokenizer(base)
    tokenized = tokenize_splits(splits, tokenizer, base)
    n = args.steps * args.batch_size
    return DatasetDict(train=tokenized["train"].shuffle(seed=0).select(range(n)),
                       valid=tokenized["valid"].select(range(min(args.valid, len(tokenized["valid"]))))), tokenizer


def argv_for_child(args) -> list[str]:
    return ["--recipe", args.recipe, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
            "--max-length", str(args.max_length), "--valid", str(args.valid)] + (["--data", args.data] if args.data else [])


def run_isolated(variant: str, child_argv: list[str], out: Path) -> tuple[dict, int]:
    """One run of one variant in a fresh Python process: its row and the valid-set size."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_train", *child_argv, "--variant", variant,
                           "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"bench_train: the {variant!r} run failed:\n{proc.stderr[-3000:]}")
    print(proc.stderr.strip().splitlines()[-1], file=sys.stderr, flush=True)
    child = json.loads(out.read_text())
    return child["rows"][0], child["valid_reviews"]


def median_row(runs: list[dict]) -> dict:
    """The run with the median samples/s (the lower middle one for an even count), with every run's rate."""
    ordered = sorted(runs, key=lambda r: r["samples_per_s"])
    return {**ordered[(len(ordered) - 1) // 2], "samples_per_s_each": [r["samples_per_s"] for r in runs]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--data", default="", help="CSV/CSV.gz (default: the recipe's data)")
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps per variant")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--only", default="", help="comma-separated substrings of variant names to run")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds of every variant (speed only)")
    ap.add_argument("--out", default="")
    ap.add_argument("--accuracy", action="store_true",
                    help="validation accuracy of fp32, bf16, and bf16 with torch's dropout, instead of speed")
    ap.add_argument("--valid", type=int, default=32, help="validation reviews (use ~500 with --accuracy)")
    ap.add_argument("--variant", default="", help=argparse.SUPPRESS)   # one variant, in this process
    args = ap.parse_args(argv)
    from review_classifier.shared.provenance import cpu_slug

    args.out = args.out or ("results/bench_train_accuracy.json" if args.accuracy else f"results/bench_train_{cpu_slug()}.json")
    variants = ([v for v in VARIANTS if v[0] in ("manual fp32 grouped", "manual bf16 grouped")] + [ACCURACY_EXTRA]
                if args.accuracy else VARIANTS)
    variants = [v for v in variants if not args.only or any(s.strip() in v[0] for s in args.only.split(","))]
    if args.variant:
        variants = [v for v in variants if v[0] == args.variant]
    from review_classifier.training.config.settings import load_config

    n = args.steps * args.batch_size
    base = load_config(args.recipe, [f"max_length={args.max_length}"] + ([f"data={args.data}"] if args.data else []))
    runs: dict[str, list[dict]] = {v[0]: [] for v in variants}
    with tempfile.TemporaryDirectory() as work:
        if args.accuracy or args.variant:
            tokenized, tokenizer = prepare(base, args)
            valid_reviews = len(tokenized["valid"])
            for v in variants:
                runs[v[0]].append(measure(*v, args, tokenized, tokenizer, Path(work)))
        else:  # each run in a fresh process: in one process, fp32 ran 20-25% slower after the bf16 runs
            for round_ in range(max(1, args.repeats)):
                for v in variants:
                    row, valid_reviews = run_isolated(v[0], argv_for_child(args), Path(work) / f"{round_}.json")
                    runs[v[0]].append(row)
    rows = [median_row(r) for r in runs.values()]
    by = {r["variant"]: r["samples_per_s"] for r in rows}
    ratios = {}
    if "manual fp32 padded" in by:
        ratios.update({f"{k} / manual fp32 padded": round(v / by["manual fp32 padded"], 2) for k, v in by.items()})
    for p in ("fp32", "bf16"):
        if f"manual {p} grouped" in by and f"trainer {p} grouped" in by:
            ratios[f"manual {p} / trainer {p}"] = round(by[f"manual {p} grouped"] / by[f"trainer {p} grouped"], 2)
    if args.accuracy and len(rows) == 3:
        fp32, bf16, torch_dropout = rows
        ratios["valid accuracy bf16 - fp32 (points)"] = round(100 * (bf16["valid_accuracy"] - fp32["valid_accuracy"]), 2)
        ratios["bf16 / fp32 speed"] = round(bf16["samples_per_s"] / fp32["samples_per_s"], 2)
        ratios["valid accuracy FastDropout - torch dropout (points)"] = round(
            100 * (bf16["valid_accuracy"] - torch_dropout["valid_accuracy"]), 2)
    result = {"benchmark": "bench_train_accuracy" if args.accuracy else "bench_train",
              "valid_reviews": valid_reviews, "model": base.model, "max_length": args.max_length,
              "batch_size": args.batch_size, "steps": args.steps, "samples": n, "repeats": len(next(iter(runs.values()))),
              "rows": rows, "ratios": ratios,
              "provenance": provenance({"train": base.data, "samples": n})}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print("| variant | samples/s | valid accuracy |\n| --- | ---: | ---: |")
    for r in rows:
        print(f"| {r['variant']} | {r['samples_per_s']:.2f} | {r.get('valid_accuracy', float('nan')):.4f} |")
    for k, v in ratios.items():
        print(f"ratio {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
