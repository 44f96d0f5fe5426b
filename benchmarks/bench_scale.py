"""One-process edge-classify against --engine ray, on the same IMDB test reviews and CPUs.

    python -m benchmarks.bench_scale [--n 20000] [--bundle B] [--repeats 1]

Variants, each a fresh `edge-classify` process (Ray: it starts its own local cluster, as a user's
first run does), on the same n shuffled IMDB test reviews written as 4 CSV files:
  local        edge-classify -o FILE, threads = the CPUs this process may use
  ray 1 actor  --engine ray --actors 1 --threads <CPUs>
  ray N actors --engine ray --actors <CPUs> --threads 1
so no variant asks for more threads than there are CPUs. Each variant also runs on a small
input (`--small`, 200 reviews): its wall time is the start-up cost (interpreter, Ray cluster,
actors, bundle); the rate once started is (n - small) / (t_n - t_small), which takes start-up
out of the comparison. Peak memory is the largest sum, sampled every 0.2 s, of the PSS
(proportional set size: a shared page counted once, split among the processes that map it)
of the edge-classify process and every process under it (Ray's GCS, raylet, workers).
The variants alternate within each round; medians over rounds. Labels are compared with
the local run's. Writes results/bench_scale_<cpu class>.json with provenance.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.bench_edge import DATA, EDGE, RESULTS_DIR, load_sample
from review_classifier.shared.provenance import cpu_slug, data_file, provenance

FILES = 4
PACKAGES = ("review-classifier", "onnxruntime", "tokenizers", "numpy", "ray", "pyarrow")


def write_inputs(folder: Path, texts: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(FILES):
        p = folder / f"part{k}.csv"
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["review"])
            w.writerows([t] for t in texts[k::FILES])
        paths.append(p)
    return paths


def pss_mb(root: int) -> float:
    """PSS of a process and all its descendants, MB (0 for processes that went away)."""
    import psutil

    try:
        procs = [psutil.Process(root)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return total / 2**20


def run_variant(name: str, args: list[str], inputs: list[Path], out: Path) -> dict:
    cmd = [str(EDGE), *args, "-o", str(out), *map(str, inputs)]
    peak, done = [0.0], threading.Event()
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)

    def sample():   # at once, then every 0.2 s: a run shorter than one period is sampled too
        while True:
            peak[0] = max(peak[0], pss_mb(p.pid))
            if done.wait(0.2):
                return
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = p.stderr.read().decode()
    rc = p.wait()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if rc != 0:
        raise SystemExit(f"{name} failed ({rc}): {err[-2000:]}")
    return {"seconds": seconds, "peak_pss_mb": peak[0]}


def stage_rates(inputs: list[Path], bundle: Path, n: int) -> dict:
    """Per-core rates of each stage of a record's trip, in this process, one thread: reading
    (and parsing) the CSV files, tokenising, and scoring (tokenising included), reviews/s."""
    from review_classifier.edge.model import EdgeClassifier
    from review_classifier.edge.records import ReadSpec, read_records

    start = time.perf_counter()
    texts = [r.text for r in read_records([str(p) for p in inputs], ReadSpec("csv"))]
    read_s = time.perf_counter() - start
    clf = EdgeClassifier(bundle, threads=1)
    start = time.perf_counter()
    for i in range(0, len(texts), 256):
        clf.encode(texts[i:i + 256])
    tok_s = time.perf_counter() - start
    sample = texts[:min(n, 1000)]
    start = time.perf_counter()
    clf.predict_proba(sample)
    score_s = time.perf_counter() - start
    mb = sum(p.stat().st_size for p in inputs) / 1e6
    return {"read_reviews_per_s": round(len(texts) / read_s, 1), "read_mb_per_s": round(mb / read_s, 1),
            "tokenise_reviews_per_s": round(len(texts) / tok_s, 1),
            "score_reviews_per_s_one_thread": round(len(sample) / score_s, 2), "score_sample": len(sample),
            "input_mb": round(mb, 2), "reviews": len(texts)}


def labels_of(out: Path) -> list[str]:
    """Labels in input order (file, then line): from the local TSV or the Ray folder."""
    if out.is_file():
        return [line.split("\t")[0] for line in out.read_text().splitlines()]
    from review_classifier.edge.ray_engine import read_output

    rows = read_output(out, ["source", "line", "label"]).to_pylist()
    rows.sort(key=lambda r: (r["source"], r["line"]))
    return [r["label"] for r in rows]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--bundle", type=Path, default=None, help="[default: the shipped default model]")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--stages-only", action="store_true",
                    help="Measure only the per-stage rates and add them to an existing results JSON (--out)")
    args = ap.parse_args(argv)
    from review_classifier.edge.locate import locate_bundle
    from review_classifier.edge.model import available_cpus

    bundle = args.bundle or locate_bundle(None)[0]
    cpus = available_cpus()
    texts, _ = load_sample(args.data, args.n, args.seed)
    results_path = args.out or RESULTS_DIR / f"bench_scale_{cpu_slug()}.json"
    if args.stages_only:
        with tempfile.TemporaryDirectory() as tmp:
            stages = stage_rates(write_inputs(Path(tmp), texts), bundle, args.n)
        result = json.loads(results_path.read_text())
        result["stages"] = {**stages, "provenance": provenance({"test": data_file(args.data)}, packages=PACKAGES)}
        results_path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(stages, indent=1))
        return
    variants = {"local": ["--threads", str(cpus)],
                "ray_1_actor": ["--engine", "ray", "--actors", "1", "--threads", str(cpus)],
                f"ray_{cpus}_actors": ["--engine", "ray", "--actors", str(cpus), "--threads", "1"]}
    runs: dict[str, dict[str, list]] = {v: {"full": [], "small": []} for v in variants}
    labels = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        full, small = write_inputs(tmp / "full", texts), write_inputs(tmp / "small", texts[:args.small])
        for r in range(args.repeats):
            for name, flags in variants.items():
                for size, inputs in (("small", small), ("full", full)):
                    out = tmp / f"{name}-{size}-{r}" / ("out.tsv" if name == "local" else "out")
                    out.parent.mkdir()
                    res = run_variant(name, ["-m", str(bundle), *flags], inputs, out)
                    runs[name][size].append(res)
                    print(f"round {r + 1} {name} {size}: {res['seconds']:.1f} s, peak PSS {res['peak_pss_mb']:.0f} MB",
                          file=sys.stderr, flush=True)
                    if size == "full" and r == 0:
                        labels[name] = labels_of(out)
        stages = stage_rates(full, bundle, args.n)
    rows = {}
    for name, rr in runs.items():
        t_full = statistics.median(x["seconds"] for x in rr["full"])
        t_small = statistics.median(x["seconds"] for x in rr["small"])
        rows[name] = {"seconds": round(t_full, 2), "startup_seconds": round(t_small, 2),
                      "reviews_per_s_overall": round(args.n / t_full, 2),
                      # None when the small run was not faster (too few reviews to separate start-up)
                      "reviews_per_s_started": round((args.n - args.small) / (t_full - t_small), 2)
                      if t_full > t_small else None,
                      "peak_pss_mb": round(max(x["peak_pss_mb"] for x in rr["full"]), 1),
                      "label_agreement_with_local": round(
                          sum(a == b for a, b in zip(labels[name], labels["local"])) / args.n, 6),
                      "runs": rr}
    base = rows["local"]["reviews_per_s_started"]
    for name, row in rows.items():
        rate = row["reviews_per_s_started"]
        row["started_rate_vs_local"] = round(rate / base, 3) if rate and base else None
    result = {"benchmark": "bench_scale", "n": args.n, "small": args.small, "files": FILES, "cpus": cpus,
              "bundle": str(bundle), "variants": {k: " ".join(v) for k, v in variants.items()}, "results": rows,
              "stages": stages,
              "goal": "Ray on the same cores within 10% of one-process edge-classify once started",
              "goal_met": all((r["started_rate_vs_local"] or 0) >= 0.9 for k, r in rows.items() if k != "local"),
              "provenance": provenance({"test": data_file(args.data), "sample": f"{args.n} reviews, seed {args.seed}"},
                                       packages=PACKAGES)}
    results_path.write_text(json.dumps(result, indent=2) + "\n")
    print("| variant | start-up s | reviews/s once started | vs local | overall reviews/s | peak PSS MB |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['startup_seconds']} | {r['reviews_per_s_started']} | {r['started_rate_vs_local']} "
              f"| {r['reviews_per_s_overall']} | {r['peak_pss_mb']} |")
    print(f"-> {results_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
