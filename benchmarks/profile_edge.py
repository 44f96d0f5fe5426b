"""Where an int8 bundle's time goes, per operator, one review per run (a benchmark, not a test).

    python -m benchmarks.profile_edge --bundle B8 [--reviews 20] [--out results/profile_edge.json]

Scores IMDB test reviews that fill the bundle's max_length (so every run has the same shape)
through the edge runtime's own session for one-review runs (edge.model._open_session, one
thread), with onnxruntime's profiler on, and after --warmup runs sums the
kernel time of each operator type. From the shapes it also works out the multiply-accumulates of
the int8 matrix products (DynamicQuantizeMatMul, MatMulIntegerToFloat, and QAttention's Q/K/V
projection) and so their rate, and estimates the share of the attention core (QK^T, softmax,
PV, which onnxruntime runs in fp32): QAttention's time less its projection at that rate.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.provenance import data_file, provenance

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "imdb" / "test.csv.gz"
INT8_GEMMS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat")


def full_length_ids(clf, texts, n: int) -> list[list[int]]:
    """The ids of the first n texts that fill max_length."""
    out = []
    for i in range(0, len(texts), 256):
        out += [x[0] for x in clf.encode(texts[i:i + 256]) if len(x[0]) == clf.policy.max_length]
        if len(out) >= n:
            return out[:n]
    raise SystemExit(f"only {len(out)} reviews fill {clf.policy.max_length} tokens; asked for {n}")


def node_events(profile: list[dict], warmup: int) -> list[dict]:
    """Kernel events of the runs after the first `warmup` runs."""
    runs = sorted(e["ts"] + e["dur"] for e in profile if e.get("cat") == "Session" and e.get("name") == "model_run")
    after = runs[warmup - 1] if warmup else -1
    return [e for e in profile if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
            and e["ts"] > after]


def shape(arg: dict) -> list[int]:
    return next(iter(arg.values()))


def int8_macs(op: str, args: dict) -> int:
    """Multiply-accumulates of the int8 matrix product in a node (QAttention: its projection).

    The profile leaves out the (prepacked) weight, so the output width comes from the first
    1-D input wider than 1: the per-channel weight scales or the bias.
    """
    ins = [shape(x) for x in args.get("input_type_shape", [])]
    if op not in INT8_GEMMS + ("QAttention",) or not ins:
        return 0
    width = next((x[0] for x in ins[1:] if len(x) == 1 and x[0] > 1), 0)
    return math.prod(ins[0]) * width


def summarise(events: list[dict], runs: int) -> dict:
    """Operator shares of the kernel time, the int8 product rate and the attention core's share
    (None where the graph has no int8 products or no QAttention)."""
    time_by_op, macs_by_op = defaultdict(float), defaultdict(int)
    core_macs = 0
    for e in events:
        op = e["args"]["op_name"]
        time_by_op[op] += e["dur"]
        macs_by_op[op] += int8_macs(op, e["args"])
        if op == "QAttention":
            batch, length, hidden = shape(e["args"]["input_type_shape"][0])
            core_macs += 2 * batch * length * length * hidden
    total = sum(time_by_op.values())
    gemm_us = sum(time_by_op.get(op, 0.0) for op in INT8_GEMMS)
    gemm_macs = sum(macs_by_op.get(op, 0) for op in INT8_GEMMS)
    rate = gemm_macs / gemm_us / 1e3 if gemm_us else None     # MAC/us -> GMAC/s
    core_us = time_by_op["QAttention"] - macs_by_op["QAttention"] / (rate * 1e3) if rate and core_macs else None
    return {"ms_per_review": round(total / runs / 1e3, 2),
            "op_share": {op: round(t / total, 4) for op, t in sorted(time_by_op.items(), key=lambda kv: -kv[1])},
            "int8_gemm_gmac_per_s": round(rate, 1) if rate else None,
            "attention_core_share": round(core_us / total, 3) if core_us and core_us > 0 else None,
            "attention_core_gflop_per_s": round(2 * core_macs / core_us / 1e3, 1) if core_us and core_us > 0 else None}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True, help="an int8 bundle scored one review per run")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--reviews", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "profile_edge.json")
    args = ap.parse_args(argv)

    import numpy as np

    from benchmarks.bench_edge import load_sample
    from review_classifier.edge.model import EdgeClassifier, _open_session

    clf = EdgeClassifier(args.bundle, threads=1)
    texts, _ = load_sample(args.data, 5000, seed=0)
    ids = full_length_ids(clf, texts, args.warmup + args.reviews)
    with tempfile.TemporaryDirectory() as tmp:
        sess = _open_session(clf.folder / clf.manifest.model_file, 1, per_review=True,
                             profile_prefix=str(Path(tmp) / "profile"))
        names = {i.name for i in sess.get_inputs()}
        for x in ids:
            row = np.asarray([x], dtype=np.int64)
            feeds = {"input_ids": row, "attention_mask": np.ones_like(row), "token_type_ids": np.zeros_like(row)}
            sess.run(None, {k: v for k, v in feeds.items() if k in names})
        profile = json.loads(Path(sess.end_profiling()).read_text())
    result = {"benchmark": "profile_edge", "bundle": str(args.bundle), "tokens": clf.policy.max_length,
              "reviews": args.reviews, "threads": 1, **summarise(node_events(profile, args.warmup), args.reviews),
              "provenance": provenance({"test": data_file(args.data)}, n=args.reviews)}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "provenance"}, indent=2))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
