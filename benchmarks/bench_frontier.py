"""The accuracy/speed frontier: each tier's bundle, TF-IDF + logistic regression and the PyTorch
peers (benchmarks/torch_peers.py: the Hugging Face pipeline in fp32 and, where the CPU computes
bf16 natively, in bf16, and a length-sorted bf16 loop) on the same IMDB test reviews in one run,
and what each review costs the CPU.

    ./dev bench-frontier                       # the shipped default tier; ../shared/data/imdb
    ./dev bench-frontier --tier default=B8 --tier fast=F8 --torch-model runs/ship/best

Per row: accuracy, reviews/s, peak RSS, model size on disk, cold start (one review, a fresh
process). Per bundle also the operations one review costs, counted from the ONNX graph's weight
shapes at the reviews' real token lengths (2 per multiply-add; int8 and fp32 apart), the
operations per second achieved, and the CPU's bound for them: cores x clock x operations a
cycle for the instruction set the kernels use (PEAK_OPS_PER_CYCLE; docs/decisions.md says where
the figures come from; it has no bf16 column, so the bf16 peers get operations and GOPS achieved
but no bound). Each tier's speed is also given over the strongest PyTorch peer of the run. Writes
results/bench_frontier_<cpu>.json and a PNG of accuracy against reviews/s.
"""
from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.offline import go_offline
from benchmarks import torch_peers
from benchmarks.bench_edge import DATA, cold_start, dir_size_mb, load_sample, run_edge, write_sample_csv
from benchmarks.bench_long import save_figure
from benchmarks.torch_peers import (BF16_MODES, PEERS, PeerProcess, bf16_skip_reason, peer_lines, peer_record,
                                    skip_reason, vs_strongest_peer)
from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.provenance import cpu_isa, cpu_slug, data_file, provenance

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO.parent / "shared" / "data" / "imdb" / "train.csv.gz"
SHIP_RUN = REPO / "runs" / "ship" / "best"   # the HF model the shipped bundle was exported from, if present
# Operations (2 per multiply-add) a core retires per cycle at best, by CPU family and kernel type.
# AVX2 + FMA (Zen 3, Haswell and later): two 256-bit FMA pipes = 16 fp32 multiply-adds; int8 via
# vpmaddubsw + vpmaddwd on those two pipes = 32 multiply-adds. Zen 4 AVX-512: 512-bit operations
# run as two 256-bit halves, so fp32 stays at 16 multiply-adds; VNNI vpdpbusd on two 256-bit pipes
# = 64 int8 multiply-adds. Zen 5 (the only AMD core with AVX512_VP2INTERSECT) and Intel cores
# with two 512-bit FMA units: 32 fp32 and 128 int8 (VNNI). On the 2-core AVX-512 EPYC with
# VP2INTERSECT the INT8 bundle ran 155 reviews/s at 4.69 GOPs a review, 727 GOPS: more than the
# Zen 4 bound of 2 cores x 2.6 GHz x 128, so that CPU is counted as Zen 5 (docs/decisions.md).
PEAK_OPS_PER_CYCLE = {
    "avx2": {"fp32": 32, "int8": 64},
    "zen4-avx512-vnni": {"fp32": 32, "int8": 128},
    "zen5-avx512-vnni": {"fp32": 64, "int8": 256},
    "intel-avx512-vnni": {"fp32": 64, "int8": 256},
}
BATCH_SIZE = 32   # edge-classify's default --batch-size, which the bundle rows run with
PEER_ROWS = {"torch_pipeline": "hf pipeline ({tier} model, fp32)",     # each PyTorch peer's row name
             "torch_pipeline_bf16": "hf pipeline ({tier} model, bf16)",
             "torch_sorted_bf16": "pytorch bf16, length-sorted batches ({tier} model)"}
NO_TORCH_MODEL = "skipped: no --torch-model (the HF model folder of the first tier)"
INT8_OPS = {"MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


def peak_family(isa: list[str], vendor: str) -> str:
    if "avx512_vnni" in isa and "avx512f" in isa:
        if "AMD" not in vendor:
            return "intel-avx512-vnni"
        return "zen5-avx512-vnni" if "avx512_vp2intersect" in isa else "zen4-avx512-vnni"
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


# peak RSS from VmHWM, the process's own: its ru_maxrss would carry this benchmark's (see torch_peers)
_TFIDF_WORKER = """
import json, pickle, sys, time
t0 = time.perf_counter()
vec, clf = pickle.load(open(sys.argv[1], "rb"))
texts = json.load(open(sys.argv[2]))
first = clf.predict(vec.transform(texts[:1]))
cold = time.perf_counter() - t0
t1 = time.perf_counter()
pred = clf.predict(vec.transform(texts)).tolist()
print(json.dumps({"cold_start_s": cold, "seconds": time.perf_counter() - t1, "pred": pred,
                  "peak_rss_mb": int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1])
                                 / 1024}))
"""


def tfidf_row(train_csv: Path, texts: list[str], gold: list[str], work: Path) -> dict:
    """TF-IDF + LR fitted on the IMDB train CSV (C = 4, from results/baseline_tfidf.json's grid),
    then scored in a fresh process: its cold start includes loading the pickled model."""
    from sklearn.linear_model import LogisticRegression

    from review_classifier.training.audit.tfidf import clean_for_tfidf, make_vectorizer
    from benchmarks.bench_long import read_labelled

    train_texts, train_labels = read_labelled(train_csv, 0, 0, "review", "sentiment")
    t0 = time.perf_counter()
    vec = make_vectorizer(min_df=2)
    clf = LogisticRegression(C=4.0, max_iter=2000).fit(vec.fit_transform(train_texts), train_labels)
    fit_s = time.perf_counter() - t0
    model, sample = work / "tfidf.pkl", work / "texts.json"
    vec.preprocessor = None   # a lambda-free pickle; clean_for_tfidf is applied below before scoring instead
    pickle.dump((vec, clf), open(model, "wb"))
    sample.write_text(json.dumps([clean_for_tfidf(t) for t in texts]))
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


def peer_row(peer: str, model_dir: Path, texts: list[str], gold: list[str], policy, threads: int, costs: dict,
             lengths: list[int], work: Path) -> dict:
    """A PyTorch peer in a process of its own, so its peak RSS is its alone: a warm-up, then a timed run."""
    with PeerProcess(peer, model_dir, texts, policy, threads, BATCH_SIZE, work) as proc:
        proc.run()
        r = proc.run()
    labels = [lab.lower() for lab in r["labels"]]
    p = PEERS[peer]
    ops = review_ops(costs, lengths, all_fp32=True)
    return {"kind": p.kind, "peer": peer, "dtype": p.dtype,
            "accuracy": float(np.mean([a == b for a, b in zip(labels, gold)])),
            "reviews_per_s": len(texts) / r["seconds"], "peak_rss_mb": r["peak_rss_mb"],
            "size_mb": dir_size_mb(model_dir),
            "cold_start_s": torch_peers.cold_start(peer, model_dir, threads, policy),
            # PEAK_OPS_PER_CYCLE has no bf16 column, so a bf16 row gets no bound
            **({"ops_per_review": ops} if p.dtype == "fp32" else {"bf16_ops_per_review": ops["fp32"]}),
            "command": p.command(model_dir, BATCH_SIZE) + " (a process of its own)"}


def bundle_row(name: str, bundle: Path, csv_path: Path, texts: list[str], gold: list[str], threads: int,
               windows: int | None) -> tuple[dict, dict, list[int], object]:
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
             "max_length": clf.policy.max_length, "base_model": clf.manifest.base_model_name,
             "accuracy": float(np.mean([a == b for a, b in zip(r["labels"], gold)])),
             "reviews_per_s": len(texts) / r["seconds"], "peak_rss_mb": r["peak_rss_mb"],
             "size_mb": dir_size_mb(bundle), "cold_start_s": cold_start(bundle, repeats=3),
             "ops_per_review": ops, "model_inputs_per_review": per_review_inputs,
             "mean_tokens_per_input": float(np.mean(lengths)),
             "command": f"edge-classify -m {bundle}" + (f" --windows {windows}" if windows else "")},
            costs, lengths, clf.policy)


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
    ap.add_argument("--bf16-peers", choices=BF16_MODES, default="auto",
                    help="the PyTorch bf16 peers: auto = where the CPU computes bf16 natively (AVX512_BF16/AMX)")
    ap.add_argument("--out", type=Path, default=None, help="[default: results/bench_frontier_<cpu>.json]")
    args = ap.parse_args(argv)
    go_offline()

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
        first_costs = first_lengths = first_policy = None
        for i, (name, path) in enumerate(tiers):
            variants = [None] + (list(args.windows) if i == 0 else [])
            for windows in variants:
                key = name if windows is None else f"{name} windows={windows}"
                print(f"bench-frontier: {key} ...", file=sys.stderr, flush=True)
                row, costs, lengths, policy = bundle_row(name, Path(path), csv_path, texts, gold, threads, windows)
                rows[key] = row
                if i == 0 and windows is None:
                    first_costs, first_lengths, first_policy = costs, lengths, policy
        print("bench-frontier: tf-idf ...", file=sys.stderr, flush=True)
        rows["tf-idf + logistic regression"] = tfidf_row(args.train, texts, gold, work)
        peers = {}
        for peer in PEERS:
            name = PEER_ROWS[peer].format(tier=tiers[0][0])
            skipped = skip_reason(peer, args.bf16_peers, isa) if args.torch_model else NO_TORCH_MODEL
            peers[name] = peer_record(peer, args.torch_model, BATCH_SIZE, skipped)
            if not skipped:
                print(f"bench-frontier: {name} ...", file=sys.stderr, flush=True)
                rows[name] = peer_row(peer, args.torch_model, texts, gold, first_policy, threads, first_costs,
                                      first_lengths, work)
    for row in rows.values():
        if "ops_per_review" in row:
            ops = row["ops_per_review"]
            row["achieved_gops"] = (ops["int8"] + ops["fp32"]) * row["reviews_per_s"] / 1e9
            row["bound_reviews_per_s"] = bound(ops, peak, threads, ghz)
            row["share_of_bound"] = row["reviews_per_s"] / row["bound_reviews_per_s"]
        elif "bf16_ops_per_review" in row:
            row["achieved_gops"] = row["bf16_ops_per_review"] * row["reviews_per_s"] / 1e9
    pipe = next((r for r in rows.values() if r.get("peer") == "torch_pipeline"), None)
    for row in rows.values():
        if pipe and row["kind"] == "bundle":
            row["speed_vs_hf_pipeline"] = row["reviews_per_s"] / pipe["reviews_per_s"]
    strongest = vs_strongest_peer({k: r["reviews_per_s"] for k, r in rows.items() if r["kind"] == "bundle"},
                                  {k: r["reviews_per_s"] for k, r in rows.items() if "peer" in r})
    for name, ratio in strongest["vs_strongest_pytorch_peer"].items():
        rows[name]["speed_vs_strongest_pytorch_peer"] = ratio
    result = {
        "what": "every tier's bundle, TF-IDF + LR and the PyTorch peers on the same IMDB test reviews, one run",
        "reviews": len(texts), "sample_seed": args.seed, "threads": threads,
        "peak": {"family": family, "ops_per_cycle_per_core": peak, "cores": threads, "clock_ghz": ghz,
                 "int8_gops": peak["int8"] * threads * ghz, "fp32_gflops": peak["fp32"] * threads * ghz},
        "rows": rows,
        "bf16_peers": args.bf16_peers,
        "cpu_native_bf16": bf16_skip_reason("auto", isa) is None,
        "pytorch_peers": peers,
        **strongest,
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
    rows = result["rows"]
    lines += ["", *peer_lines(result, rows)]
    for name in result["behind_strongest_pytorch_peer"]:
        peer = rows[result["strongest_pytorch_peer"]]
        tier = rows[name]
        lines.append(f"- {name} is behind it: {tier['achieved_gops']:.0f} GOPS, {tier['share_of_bound']:.0%} of this "
                     f"CPU's bound for its operations; the peer: {peer['achieved_gops']:.0f} GOPS ({peer['dtype']})")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    # named in the legend, not beside the points: the PyTorch peers often sit close together
    for name, r in result["rows"].items():
        marker = {"bundle": "o", "tfidf": "s", "hf-pipeline": "^", "pytorch": "D"}[r["kind"]]
        ax.scatter(r["reviews_per_s"], r["accuracy"], marker=marker, s=60, label=name)
    best = result.get("strongest_pytorch_peer")
    if best:
        ax.axvline(result["rows"][best]["reviews_per_s"], color="grey", linestyle="--", linewidth=0.8,
                   label="the strongest PyTorch peer's speed")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, borderaxespad=0)
    ax.margins(x=0.15, y=0.12)
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
