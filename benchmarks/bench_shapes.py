"""Student shapes: INT8 reviews/s of MiniLM-L6 cut to L layers at max_length N, side by side.

Choosing the fast tier's shape comes before training it, so this measures untrained students
(speed does not depend on the weights): each (layers, max_length) pair is exported to ONNX,
quantized with onnxruntime's dynamic INT8 (per-channel, 7-bit weights, as the bundles' chosen
candidate) and timed on the same IMDB test reviews, cut head+tail, in one process:

    python -m benchmarks.bench_shapes --n 400    # -> results/bench_shapes_<cpu>.json

Speed is reported as a ratio to the first shape (the default tier, 6 layers x 256 tokens). The
runner is training.bundle.export.onnx_logits (32 reviews a run, sorted by length), not edge-classify:
absolute reviews/s are below the edge runtime's; the ratios are what the choice reads.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.provenance import cpu_slug, data_file, provenance
from review_classifier.shared.text import TextPolicy

from benchmarks.bench_long import DATA, read_labelled

SHAPES = ((6, 256), (3, 256), (2, 256), (4, 128), (3, 160), (3, 192), (4, 160))


def quantized_student(layers: int, folder: Path) -> Path:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification

    from review_classifier.training.config.settings import OFFLINE_MINILM
    from review_classifier.training.fit.model import keep_first_layers
    from review_classifier.training.fit.model_sources import resolve_model_path

    model = AutoModelForSequenceClassification.from_pretrained(resolve_model_path(OFFLINE_MINILM), num_labels=2)
    keep_first_layers(model, layers).eval()
    dummy = torch.zeros((1, 16), dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    fp32, int8 = folder / f"fp32-{layers}.onnx", folder / f"int8-{layers}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy, dummy + 1, dummy), str(fp32), input_names=names, output_names=["logits"],
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names}, opset_version=17, dynamo=False)
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    return int8


def reviews_per_s(model: Path, ids: list[list[int]], threads: int, repeats: int) -> float:
    """The fastest of `repeats` timed passes (after a warm-up) of training.bundle.export.onnx_logits."""
    from review_classifier.training.bundle.export import onnx_logits, ort_session

    session = ort_session(model, threads)
    onnx_logits(session, ids, 0, batch_size=32)   # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        onnx_logits(session, ids, 0, batch_size=32)
        best = min(best, time.perf_counter() - t)
    return len(ids) / best


def main(argv: list[str] | None = None) -> None:
    from transformers import AutoTokenizer

    from review_classifier.edge.model import available_cpus
    from review_classifier.training.config.settings import OFFLINE_MINILM
    from review_classifier.training.fit.model_sources import resolve_model_path
    from review_classifier.training.data.text import encode_texts

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help="labelled CSV(.gz) [default: ../shared/data/imdb/test.csv.gz]")
    p.add_argument("--n", type=int, default=400, help="reviews sampled (seed 0)")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per shape; the fastest counts")
    p.add_argument("--out", type=Path, default=None, help="[default: results/bench_shapes_<cpu>.json]")
    args = p.parse_args(argv)
    texts, _ = read_labelled(args.data, args.n, 0, "review", "sentiment")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(OFFLINE_MINILM))
    threads = available_cpus()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models: dict[int, Path] = {}
        for layers, max_length in SHAPES:
            if layers not in models:
                models[layers] = quantized_student(layers, Path(tmp))
            ids = encode_texts(texts, tokenizer, TextPolicy(max_length=max_length, truncation="head+tail"))
            rate = reviews_per_s(models[layers], ids, threads, args.repeats)
            rows.append({"layers": layers, "max_length": max_length, "mean_tokens": round(float(np.mean([len(i) for i in ids])), 1),
                         "reviews_per_s": round(rate, 1)})
            print(f"{layers} layers x {max_length} tokens: {rate:.1f} reviews/s", flush=True)
    for r in rows:
        r["speed_vs_default"] = round(r["reviews_per_s"] / rows[0]["reviews_per_s"], 2)
    out = args.out or Path("results") / f"bench_shapes_{cpu_slug()}.json"
    report = {"rows": rows, "reviews": len(texts), "threads": threads, "quantization": "onnxruntime dynamic INT8, "
              "per-channel, reduce_range", "note": "untrained students: speed only; ratios to the first row",
              "provenance": provenance({"eval": data_file(args.data)})}
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
