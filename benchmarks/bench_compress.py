"""Compression benchmark: PyTorch fp32 vs ONNX fp32 vs ONNX int8 (and pruned / distilled models).

    python -m benchmarks.bench_compress --model-dir DIR --data CSV [--pruned DIR] [--distilled DIR]
        [--recipe default] [--set k=v ...] [--limit 1000] [--threads N] [--out results/bench_compress.json]

The labelled reviews in --data are split (stratified, fixed seed) into a tuning half, from which
the int8 calibration sample and the quantization accuracy check come, and an evaluation half,
capped at --limit. Every model is scored on the same evaluation reviews in one run: validation
accuracy, macro F1, model file size and reviews/s, tokenisation included (PyTorch through
training.data.text.encode_texts, ONNX through the edge runtime's EdgeClassifier on a verified
bundle). Results and provenance go to results/bench_compress.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "bench_compress.json"
TUNE_CAP = 500        # validation reviews for the quantization accuracy check


def torch_row(model_dir: Path, reviews, cfg, threads: int, batch_size: int) -> dict:
    """PyTorch fp32 (eager attention, inference mode), tokenisation included in the time."""
    import torch

    from review_classifier.shared.metrics import classification_report
    from review_classifier.training.bundle.export import load_for_export, model_input_names, pad_token_id, torch_logits
    from review_classifier.training.data.text import encode_texts

    torch.set_num_threads(threads)
    model, tok = load_for_export(model_dir)
    names = model_input_names(model, tok)
    torch_logits(model, encode_texts(reviews.texts[:batch_size], tok, cfg.text_policy), names, pad_token_id(tok))
    start = time.perf_counter()
    ids = encode_texts(reviews.texts, tok, cfg.text_policy)
    logits = torch_logits(model, ids, names, pad_token_id(tok), batch_size)
    seconds = time.perf_counter() - start
    weights = list(model_dir.glob("*.safetensors")) or list(model_dir.glob("*.bin"))
    report = classification_report(list(reviews.labels), logits.argmax(-1).tolist(), list(reviews.names) or
                                   [str(i) for i in range(logits.shape[1])])
    return {"runtime": "pytorch", "precision": "fp32", "accuracy": report["accuracy"],
            "macro_f1": report["macro_f1"], "size_bytes": sum(w.stat().st_size for w in weights),
            "parameters": sum(p.numel() for p in model.parameters()),
            "reviews_per_s": round(len(reviews) / seconds, 2), "seconds": round(seconds, 2)}


def onnx_row(bundle: Path, reviews, threads: int, batch_size: int) -> dict:
    """A bundle through the edge runtime (tokenisation included)."""
    from review_classifier.edge.model import EdgeClassifier
    from review_classifier.shared.metrics import classification_report

    clf = EdgeClassifier(bundle, threads=threads, batch_size=batch_size)
    clf.predict_proba(reviews.texts[:batch_size])
    start = time.perf_counter()
    probs = clf.predict_proba(reviews.texts)
    seconds = time.perf_counter() - start
    report = classification_report(list(reviews.labels), probs.argmax(-1).tolist(), clf.labels)
    return {"runtime": "onnxruntime", "precision": clf.manifest.precision, "accuracy": report["accuracy"],
            "macro_f1": report["macro_f1"], "size_bytes": (bundle / clf.manifest.model_file).stat().st_size,
            "reviews_per_s": round(len(reviews) / seconds, 2), "seconds": round(seconds, 2),
            "quantization": {k: clf.manifest.compression.get("quantization", {}).get(k)
                             for k in ("approach", "chosen", "relative_loss", "reduce_range")}
            if clf.manifest.precision == "int8" else None}


def bench_provenance(args: argparse.Namespace, threads: int) -> dict:
    from review_classifier.shared.provenance import data_file, provenance
    from review_classifier.training.bundle.quantize import vnni_available

    return provenance({"eval": data_file(args.data)}, threads=threads, nproc=os.cpu_count(),
                      vnni=vnni_available())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", required=True, type=Path, help="fine-tuned classifier folder (the uncompressed one)")
    p.add_argument("--data", required=True, help="labelled CSV/CSV.gz (or any other data source train-classify reads)")
    p.add_argument("--pruned", type=Path, help="pruned model folder (train-classify prune ... -> OUT/best)")
    p.add_argument("--distilled", type=Path, help="distilled student folder (train-classify distill ... -> OUT/best)")
    p.add_argument("--recipe", default="default")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="key=value config override")
    p.add_argument("--limit", type=int, default=1000, help="evaluation reviews (default 1000)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (default: usable CPUs)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    from review_classifier.edge.model import available_cpus
    from review_classifier.shared.atomic import atomic_write_text
    from review_classifier.training.bundle.build import BundleInputs, build_bundles
    from review_classifier.training.config.settings import load_config
    from review_classifier.training.data.sources import load_reviews
    from review_classifier.training.data.splits import reduce_reviews, split_reviews
    from review_classifier.training.bundle.export import ExportError

    cfg = load_config(args.recipe, args.overrides)
    threads = args.threads or available_cpus()
    tune_part, eval_part = split_reviews(load_reviews(args.data, cfg), 0.5, cfg.seed)
    evaluation = reduce_reviews(eval_part, min(1.0, args.limit / len(eval_part)), cfg.seed)
    tune = reduce_reviews(tune_part, min(1.0, TUNE_CAP / len(tune_part)), cfg.seed)
    calib = reduce_reviews(tune_part, min(1.0, cfg.calib_samples / len(tune_part)), cfg.seed + 1)
    models = {"original": args.model_dir, "pruned": args.pruned, "distilled": args.distilled}
    rows: list[dict] = []
    failures: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-compress-") as work:
        for name, model_dir in models.items():
            if model_dir is None:
                continue
            print(f"[{name}] {model_dir}", file=sys.stderr)
            rows.append({"model": name, **torch_row(model_dir, evaluation, cfg, threads, args.batch_size)})
            started = time.perf_counter()
            try:
                bundles = build_bundles(BundleInputs(model_dir, cfg, valid=tune, calib=calib), Path(work) / name)
            except ExportError as e:   # a failed check is a result too: record it, go on
                failures.append({"model": name, "error": str(e)})
                print(f"[{name}] bundle failed: {e}", file=sys.stderr)
                continue
            build_s = round(time.perf_counter() - started, 1)
            for precision in ("fp32", "int8"):
                rows.append({"model": name, "bundle_build_seconds": build_s,
                             **onnx_row(bundles[precision], evaluation, threads, args.batch_size)})
    base = next(r for r in rows if r["model"] == "original" and r["runtime"] == "pytorch")
    for r in rows:
        r["speedup_vs_pytorch_fp32"] = round(r["reviews_per_s"] / base["reviews_per_s"], 2)
        r["accuracy_delta_vs_pytorch_fp32"] = round(r["accuracy"] - base["accuracy"], 4)
        r["size_ratio_vs_pytorch_fp32"] = round(r["size_bytes"] / base["size_bytes"], 3)
    result = {"rows": rows, "failures": failures, "eval_reviews": len(evaluation), "tune_reviews": len(tune),
              "calib_reviews": len(calib), "config": {k: getattr(cfg, k) for k in (
                  "max_length", "truncation", "quant_approach", "quant_tolerance", "calib_samples",
                  "int8_agreement", "parity_atol")},
              "provenance": bench_provenance(args, threads)}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"-> {args.out}", file=sys.stderr)
    return result


def markdown(result: dict) -> str:
    lines = ["| model | runtime | precision | accuracy | macro F1 | size MB | reviews/s | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} "
                     f"| {r['size_bytes'] / 1e6:.1f} | {r['reviews_per_s']:.1f} | {r['speedup_vs_pytorch_fp32']:.2f}x |")
    for f in result["failures"]:
        lines.append(f"| {f['model']} | onnxruntime | - | failed: {f['error'][:120]} |")
    prov = result["provenance"]
    lines.append(f"\n{result['eval_reviews']} reviews, {prov['machine']['cpu']}, {prov['threads']} thread(s), "
                 f"commit {prov['git_commit']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
