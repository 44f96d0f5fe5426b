"""The accuracy/speed frontier: each tier's bundle, TF-IDF + logistic regression and the Hugging
Face pipeline on the same IMDB test reviews in one run, and what each review costs the CPU.

    ./dev bench-frontier                       # the shipped default tier; ../shared/data/imdb
    ./dev bench-frontier --tier default=B8 --tier fast=F8 --torch-model runs/ship/best

Per row: accuracy, reviews/s, peak RSS, model size on disk, cold start (one review, a fresh
process). Per bundle also the operations one review costs, counted from the ONNX graph's weight
shapes at the reviews' real token lengths (2 per multiply-add; int8 and fp32 apart), the
operations per second achieved, and the CPU's bound for them: cores x clock x operations a
cycle for the instruction set the kernels use (PEAK_OPS_PER_CYCLE; docs/decisions.md says where
the figures come from). Writes results/bench_frontier_<cpu>.json and a PNG of accuracy against
reviews/s.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_edge import DATA, cold_start, dir_size_mb, load_sample, run_edge, write_sample_csv
from benchmarks.bench_long import save_figure
from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.provenance import cpu_isa, cpu_slug, data_file, provenance

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO.parent / "shared" / "data" / "imdb" / "train.csv.gz"
SHIP_RUN = REPO / "runs" / "ship" / "best"   # the HF model the shipped bundle was exported from, if present
# Operations (2 per multiply-add) a core retires per cycle at best, by CPU family and kernel type.
# AVX2 + FMA (Zen 3, Haswell and later): two 256-bit FMA pipes = 16 fp32 multiply-adds; int8 via
# vpmaddubsw + vpmaddwd on those two pipes = 32 multiply-adds. Zen 4 AVX-512: 512-bit operations
# run as two 256-bit halves, so fp32 stays at 16 multiply-adds; VNNI vpdpbusd on two 256-bit pipes
# = 64 int8 multiply-adds. Intel cores with two 512-bit FMA units: 32 fp32 and 128 int8 (VNNI).
PEAK_OPS_PER_CYCLE = {
    "avx2": {"fp32": 32, "int8": 64},
    "zen4-avx512-vnni": {"fp32": 32, "int8": 128},
    "intel-avx512-vnni": {"fp32": 64, "int8": 256},
}
INT8_OPS = {"MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


def peak_family(isa: list[str], vendor: str) -> str:
    if "avx512_vnni" in isa and "avx512f" in isa:
        return "zen4-avx512-vnni" if "AMD" in vendor else "intel-avx512-vnni"
    return "avx2"


def clock_ghz() -> float:
    """The first core's clock as /proc/cpuinfo reports it (a VM shows the nominal one)."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1000
    except OSError:
        pass
    return float("nan")


def graph_costs(model_path: Path) -> dict:
    """Multiply-adds of one model run, from the weights' shapes: per token (int8 and fp32 weight
    matmuls), per attention layer (QK^T and PV: 2 x L^2 x hidden, computed in fp32 by
    onnxruntime's Attention/QAttention and by plain MatMuls), and once per review (Gemm on [CLS])."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    costs = {"int8_per_token": 0, "fp32_per_token": 0, "attention_layers": 0, "hidden": 0, "per_review": 0,
             "activation_matmuls": 0}
    for node in model.graph.node:
        weights = [inits[i] for i in node.input if i in inits and len(inits[i]) == 2]
        w = weights[0] if weights else None
        if node.op_type in ("QAttention", "Attention") and w:
            costs["int8_per_token" if node.op_type == "QAttention" else "fp32_per_token"] += w[0] * w[1]
            costs["attention_layers"] += 1
            costs["hidden"] = w[0]
        elif node.op_type in INT8_OPS and w:
            costs["int8_per_token"] += w[0] * w[1]
        elif node.op_type in ("MatMul", "FusedMatMul"):
            if w:
                costs["fp32_per_token"] += w[0] * w[1]
            else:
                costs["activation_matmuls"] += 1   # QK^T or PV of an unfused attention
        elif node.op_type == "Gemm" and w:
            costs["per_review"] += w[0] * w[1]
        elif node.op_type == "Gather" and w and not costs["hidden"]:
            costs["hidden"] = w[1]
    return costs


def review_ops(costs: dict, lengths: list[int], all_fp32: bool = False) -> dict:
    """Mean operations (2 per multiply-add) one review costs at its model inputs' lengths."""
    L = np.asarray(lengths, dtype=np.float64)
    attn = (2 * costs["attention_layers"] + costs["activation_matmuls"]) * L ** 2 * costs["hidden"]
    int8 = 2 * L * costs["int8_per_token"]
    fp32 = 2 * (L * costs["fp32_per_token"] + attn + costs["per_review"])
    if all_fp32:
        int8, fp32 = np.zeros_like(int8), fp32 + int8
    return {"int8": float(int8.mean()), "fp32": float(fp32.mean())}


def bound(ops: dict, peak: dict, cores: int, ghz: float) -> float:
    """Reviews/s if every operation ran at the CPU's peak for its type."""
    seconds = sum(ops[k] / (peak[k] * cores * ghz * 1e9) for k in ("int8", "fp32"))
    return 1.0 / seconds if seconds else float("nan")


_TFIDF_WORKER = """
import json, pickle, resource, sys, time
t0 = time.perf_counter()
vec, clf = pickle.load(open(sys.argv[1], "rb"))
texts = json.load(open(sys.argv[2]))
first = clf.predict(vec.transform(texts[:1]))
cold = time.perf_counter() - t0
t1 = time.perf_counter()
pred = clf.predict(vec.transform(texts)).tolist()
print(json.dumps({"cold_start_s": cold, "seconds": time.perf_counter() - t1, "pred": pred,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def tfidf_row(train_csv: Path, texts: list[str], gold: list[str], work: Path) -> dict:
    """TF-IDF + LR fitted on the IMDB train CSV (C = 4, from results/baseline_tfidf.json's grid),
    then scored in a fresh process: its cold start includes loading the pickled model."""
    from sklearn.linear_model import LogisticRegression

    from benchmarks.baseline_tfidf import _clean, make_vectorizer
    from benchmarks.bench_long import read_labelled

    train_texts, train_labels = read_labelled(train_csv, 0, 0, "review", "sentiment")
    t0 = time.perf_counter()
    vec = make_vectorizer(min_df=2)
    clf = LogisticRegression(C=4.0, max_iter=2000).fit(vec.fit_transform(train_texts), train_labels)
    fit_s = time.perf_counter() - t0
    model, sample = work / "tfidf.pkl", work / "texts.json"
    vec.preprocessor = None   # a lambda-free pickle; _clean is applied below before scoring instead
    pickle.dump((vec, clf), open(model, "wb"))
    sample.write_text(json.dumps([_clean(t) for t in texts]))
    cold = []
    for _ in range(3):
        p = subprocess.run([sys.executable, "-c", _TFIDF_WORKER, str(model), str(sample)], capture_output=True,
                           text=True, check=True)
        out = json.loads(p.stdout)
        cold.append(out["cold_start_s"])
    return {"kind": "tfidf", "accuracy": float(np.mean([a == b for a, b in zip(out["pred"], gold)])),
            "reviews_per_s": len(texts) / out["seconds"], "peak_rss_mb": out["peak_rss_mb"],
            "size_mb": model.stat().st_size / 2**20, "cold_start_s": sorted(cold)[1], "fit_seconds": round(fit_s, 1),
            "command": "TfidfVectorizer(1-2 grams, min_df 2, sublinear tf) + LogisticRegression(C=4) on the 25k train"}


_PIPELINE_COLD = """
import sys, time
t0 = time.perf_counter()
import torch
from transformers import pipeline
torch.set_num_threads(int(sys.argv[2]))
pipe = pipeline("text-classification", model=sys.argv[1], device="cpu")
pipe(["A fine film."])
print(time.perf_counter() - t0)
"""


_PIPELINE_WORKER = """
import json, sys
from benchmarks.bench_edge import torch_pipeline_runner
from review_classifier.shared.text import TextPolicy
model_dir, texts, policy, threads = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), int(sys.argv[4])
run = torch_pipeline_runner(model_dir, texts, TextPolicy.from_dict(policy), threads, batch_size=32)
run()                                     # warm-up
print(json.dumps(run()))
"""


def pipeline_row(model_dir: Path, texts: list[str], gold: list[str], policy, threads: int, costs: dict,
                 lengths: list[int], work: Path) -> dict:
    """The HF pipeline in a process of its own, so its peak RSS is the pipeline's alone."""
    sample, pol = work / "pipeline_texts.json", work / "policy.json"
    sample.write_text(json.dumps(texts))
    pol.write_text(json.dumps(policy.to_dict()))
    p = subprocess.run([sys.executable, "-c", _PIPELINE_WORKER, str(model_dir), str(sample), str(pol), str(threads)],
                       capture_output=True, text=True, cwd=REPO)
    if p.returncode:
        raise SystemExit(f"bench-frontier: the HF pipeline run failed: {p.stderr[-2000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    cold = sorted(float(subprocess.run([sys.executable, "-c", _PIPELINE_COLD, str(model_dir), str(threads)],
                                       capture_output=True, text=True, check=True).stdout) for _ in range(3))[1]
    labels = [lab.lower() for lab in r["labels"]]
    return {"kind": "hf-pipeline", "accuracy": float(np.mean([a == b for a, b in zip(labels, gold)])),
            "reviews_per_s": len(texts) / r["seconds"], "peak_rss_mb": r["peak_rss_mb"],
            "size_mb": dir_size_mb(model_dir), "cold_start_s": cold,
            "ops_per_review": review_ops(costs, lengths, all_fp32=True),
            "command": f"transformers pipeline('text-classification', {model_dir}), torch fp32, batch 32, "
                       f"texts pre-cut by the bundle's policy (a process of its own)"}


def bundle_row(name: str, bundle: Path, csv_path: Path, texts: list[str], gold: list[str], threads: int,
               windows: int | None) -> tuple[dict, dict, list[int]]:
    from review_classifier.edge.model import EdgeClassifier

    clf = EdgeClassifier(bundle, threads=1, windows=windows)
    lengths = [len(x) for text in clf.encode(texts) for x in text]
    per_review_inputs = len(lengths) / len(texts)
    extra = ("--windows", str(windows)) if windows else ()
    run_edge(bundle, csv_path, threads, extra_args=extra)           # warm-up (page cache)
    r = run_edge(bundle, csv_path, threads, extra_args=extra)
    costs = graph_costs(bundle / clf.manifest.model_file)
    ops = review_ops(costs, lengths)
    ops = {k: v * per_review_inputs for k, v in ops.items()}
    return ({"kind": "bundle", "tier": name, "precision": clf.manifest.precision, "windows": clf.policy.windows,
             "max_length": clf.policy.max_length, "base_model": clf.manifest.base_model,
             "accuracy": float(np.mean([a == b for a, b in zip(r["labels"], gold)])),
             "reviews_per_s": len(texts) / r["seconds"], "peak_rss_mb": r["peak_rss_mb"],
             "size_mb": dir_size_mb(bundle), "cold_start_s": cold_start(bundle, repeats=3),
             "ops_per_review": ops, "model_inputs_per_review": per_review_inputs,
             "mean_tokens_per_input": float(np.mean(lengths)),
             "command": f"edge-classify -m {bundle}" + (f" --windows {windows}" if windows else "")},
            costs, lengths)


def main(argv: list[str] | None = None) -> dict:
    from review_classifier.edge.locate import locate_bundle
    from review_classifier.edge.model import available_cpus

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tier", action="append", default=[], help="NAME=BUNDLE (repeatable) [default: default=the shipped model]")
    ap.add_argument("--windows", type=int, nargs="*", default=[4],
                    help="also score the first tier with these --windows settings")
    ap.add_argument("--torch-model", type=Path, default=SHIP_RUN if SHIP_RUN.is_dir() else None,
                    help="HF model folder of the first tier, for the pipeline row [default: runs/ship/best if present]")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--train", type=Path, default=TRAIN, help="for the TF-IDF row")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="[default: results/bench_frontier_<cpu>.json]")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    threads = args.threads or available_cpus()
    tiers = [t.split("=", 1) for t in args.tier] or [["default", str(locate_bundle(None)[0])]]
    texts, gold = load_sample(args.data, args.n, args.seed)
    isa = cpu_isa()
    from review_classifier.shared.provenance import machine

    vendor = machine()["cpu"]
    family = peak_family(isa, vendor)
    ghz = clock_ghz()
    peak = PEAK_OPS_PER_CYCLE[family]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        csv_path = write_sample_csv(work / "sample.csv", texts, gold)
        first_costs = first_lengths = None
        for i, (name, path) in enumerate(tiers):
            variants = [None] + (list(args.windows) if i == 0 else [])
            for windows in variants:
                key = name if windows is None else f"{name} windows={windows}"
                print(f"bench-frontier: {key} ...", file=sys.stderr, flush=True)
                row, costs, lengths = bundle_row(name, Path(path), csv_path, texts, gold, threads, windows)
                rows[key] = row
                if i == 0 and windows is None:
                    first_costs, first_lengths = costs, lengths
        print("bench-frontier: tf-idf ...", file=sys.stderr, flush=True)
        rows["tf-idf + logistic regression"] = tfidf_row(args.train, texts, gold, work)
        if args.torch_model:
            print("bench-frontier: hf pipeline ...", file=sys.stderr, flush=True)
            from review_classifier.edge.model import EdgeClassifier

            policy = EdgeClassifier(Path(tiers[0][1]), threads=1).policy
            rows[f"hf pipeline ({tiers[0][0]} model, fp32)"] = pipeline_row(
                args.torch_model, texts, gold, policy, threads, first_costs, first_lengths, work)
    for row in rows.values():
        if "ops_per_review" in row:
            ops = row["ops_per_review"]
            row["achieved_gops"] = (ops["int8"] + ops["fp32"]) * row["reviews_per_s"] / 1e9
            row["bound_reviews_per_s"] = bound(ops, peak, threads, ghz)
            row["share_of_bound"] = row["reviews_per_s"] / row["bound_reviews_per_s"]
    pipe = next((r for r in rows.values() if r["kind"] == "hf-pipeline"), None)
    for row in rows.values():
        if pipe and row["kind"] == "bundle":
            row["speed_vs_hf_pipeline"] = row["reviews_per_s"] / pipe["reviews_per_s"]
    result = {
        "what": "every tier's bundle, TF-IDF + LR and the HF pipeline on the same IMDB test reviews, one run",
        "reviews": len(texts), "sample_seed": args.seed, "threads": threads,
        "peak": {"family": family, "ops_per_cycle_per_core": peak, "cores": threads, "clock_ghz": ghz,
                 "int8_gops": peak["int8"] * threads * ghz, "fp32_gflops": peak["fp32"] * threads * ghz},
        "rows": rows,
        "provenance": provenance({"test": data_file(args.data), "train": data_file(args.train)},
                                 packages=("review-classifier", "onnxruntime", "torch", "transformers",
                                           "scikit-learn", "numpy")),
    }
    out = args.out or REPO / "results" / f"bench_frontier_{cpu_slug(isa)}.json"
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
    print(markdown(result))
    return result


def markdown(result: dict) -> str:
    lines = ["| | accuracy | reviews/s | peak RSS MB | size MB | cold start s | GOPs/review | share of CPU bound |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        ops = r.get("ops_per_review")
        gops = f"{(ops['int8'] + ops['fp32']) / 1e9:.2f}" if ops else ""
        share = f"{r['share_of_bound']:.0%}" if "share_of_bound" in r else ""
        lines.append(f"| {name} | {r['accuracy']:.4f} | {r['reviews_per_s']:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['size_mb']:.1f} | {r['cold_start_s']:.2f} | {gops} | {share} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, r in result["rows"].items():
        marker = {"bundle": "o", "tfidf": "s", "hf-pipeline": "^"}[r["kind"]]
        ax.scatter(r["reviews_per_s"], r["accuracy"], marker=marker, s=60)
        ax.annotate(name, (r["reviews_per_s"], r["accuracy"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("reviews/s (log scale)")
    ax.set_ylabel("accuracy")
    m = result["provenance"]["machine"]
    ax.set_title(f"{result['reviews']} IMDB test reviews, {result['threads']} threads\n"
                 f"{m['cpu']} ({', '.join(m['isa']) or 'no AVX'})", fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
