"""Check that an int8 bundle stays correct on a CPU with AVX2 but no AVX-512, VNNI or AMX.

    python -m benchmarks.avx2_check --int8-bundle B8 [--fp32-bundle B32] [--n 48] [--cpu Haswell]

onnxruntime cannot be told to cap its CPU kernels (MLAS) at AVX2, so the same reviews are
scored twice with edge.model.EdgeClassifier: natively, and under user-mode QEMU
(`qemu-x86_64 -cpu Haswell`), whose emulated CPUID has AVX2 and FMA but no AVX-512, VNNI or AMX.
MLAS then takes its AVX2 U8S8 kernel (VPMADDUBSW, whose int16 pair sums saturate when int8
weights exceed 7 bits: onnxruntime issues 5849 and 6004). The scoring process reads CPUID itself
(a few bytes of machine code; /proc/cpuinfo under qemu-user is the host's) and runs a one-node
MatMulInteger that saturates only on that kernel, so the report proves which path ran.

Reports the features seen natively and emulated, the U8S8 kernel MLAS picks from them, the
range of the bundle's int8 weights (within [-64, 64] nothing saturates), label agreement and
max |probability difference| of AVX2 vs native int8 and vs native fp32, and seconds. Even with
7-bit weights a static-int8 bundle drifts by ~1e-2 (AVX-512 vs FMA3 float kernels moving
requantization roundings), hence --atol 0.02; saturation moved probabilities by 0.3.
--x64quantprecision also scores under emulation with onnxruntime's `session.x64quantprecision`
guard (s8 weights turned into u8 on such CPUs). Emulated seconds are QEMU's speed, not a
laptop's. Writes results/avx2_check.json (with provenance), prints a summary, exits 1 when AVX2
int8 drifts from native int8 by more than --atol.
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import json
import mmap
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.offline import go_offline
from benchmarks.bench_edge import agreement, load_sample
from review_classifier.shared.provenance import data_file, provenance

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "imdb" / "test.csv.gz"  # ../shared/data/imdb beside the checkout
RESULTS = REPO / "results" / "avx2_check.json"
QEMU_NAMES = ("qemu-x86_64", "qemu-x86_64-static")
INSTALL_HINT = "apt-get install qemu-user"
SPEED_NOTE = ("emulated seconds are QEMU's (TCG translation on this host), not an AVX2 laptop's speed: "
              "only the native seconds are a real measurement")
MUST_BE_ABSENT = ("avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
S7_LIMIT = 64   # |int8 weight| <= 64: 2 * 255 * 64 fits VPMADDUBSW's int16 pair sum

# (name as in /proc/cpuinfo, CPUID leaf, subleaf, register 0-3 = eax ebx ecx edx, bit)
CPUID_FEATURES = [
    ("sse4_1", 1, 0, 2, 19), ("sse4_2", 1, 0, 2, 20), ("fma", 1, 0, 2, 12), ("osxsave", 1, 0, 2, 27),
    ("avx", 1, 0, 2, 28), ("f16c", 1, 0, 2, 29),
    ("avx2", 7, 0, 1, 5), ("avx512f", 7, 0, 1, 16), ("avx512dq", 7, 0, 1, 17), ("avx512bw", 7, 0, 1, 30),
    ("avx512vl", 7, 0, 1, 31), ("avx512_vnni", 7, 0, 2, 11),
    ("amx_bf16", 7, 0, 3, 22), ("amx_tile", 7, 0, 3, 24), ("amx_int8", 7, 0, 3, 25),
    ("avx_vnni", 7, 1, 0, 4), ("avx512_bf16", 7, 1, 0, 5), ("avx_vnni_int8", 7, 1, 3, 4),
]
# x86-64 SysV: cpuid(edi=leaf, esi=subleaf, rdx=uint32[4]) and xgetbv(ecx=0) -> rax
_CPUID_CODE = bytes.fromhex("53" "4989d0" "89f8" "89f1" "0fa2" "418900" "41895804" "41894808" "4189500c" "5b" "c3")
_XGETBV_CODE = bytes.fromhex("31c9" "0f01d0" "48c1e220" "4809d0" "c3")


def read_cpu_features() -> dict:
    """CPUID and XCR0 as this process sees them (under qemu-user: the emulated CPU's)."""
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(_CPUID_CODE.ljust(64, b"\xcc") + _XGETBV_CODE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(page))
    regs_t = ctypes.c_uint32 * 4
    cpuid_fn = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(regs_t))(base)
    xgetbv_fn = ctypes.CFUNCTYPE(ctypes.c_uint64)(base + 64)

    def cpuid(leaf: int, sub: int) -> list[int]:
        regs = regs_t()
        cpuid_fn(leaf, sub, ctypes.byref(regs))
        return list(regs)

    max_leaf = cpuid(0, 0)[0]
    regs = {(leaf, sub): cpuid(leaf, sub) if leaf <= max_leaf else [0] * 4 for leaf, sub in ((1, 0), (7, 0), (7, 1))}
    present = [name for name, leaf, sub, reg, bit in CPUID_FEATURES if regs[leaf, sub][reg] >> bit & 1]
    xcr0 = xgetbv_fn() if "osxsave" in present else 0   # XGETBV faults unless the OS enabled XSAVE
    return {"features": present, "xcr0": hex(xcr0),
            "os_saves": {"avx": xcr0 & 0x6 == 0x6, "avx512": xcr0 & 0xE0 == 0xE0, "amx": xcr0 & 0x60000 == 0x60000},
            "u8s8_kernel": mlas_u8s8_kernel(set(present), xcr0)}


def mlas_u8s8_kernel(f: set[str], xcr0: int) -> str:
    """The U8S8 GEMM kernel onnxruntime's MLAS picks from these CPUID bits (its platform.cpp rules)."""
    if not ({"avx", "osxsave"} <= f and xcr0 & 0x6 == 0x6 and {"fma", "avx2"} <= f):
        return "sse (16-bit widening, no saturation)"
    if {"amx_tile", "amx_int8"} <= f and xcr0 & 0x60000 == 0x60000:
        return "amx (no saturation)"
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= f and xcr0 & 0xE0 == 0xE0:
        if "avx512_vnni" in f:
            return "avx512-vnni vpdpbusd (no saturation)"
        return "avx512bw vpmaddubsw (saturates with 8-bit weights)"
    if "avx_vnni" in f:
        return "avx-vnni vpdpbusd (no saturation)"
    return "avx2 vpmaddubsw (saturates with 8-bit weights)"


def write_saturation_probe(path: Path, k: int = 64) -> Path:
    """A one-node MatMulInteger, u8 x s8 = 255 x 127: exact on VNNI, int16-saturated on VPMADDUBSW."""
    import numpy as np
    from onnx import TensorProto, helper

    weight = helper.make_tensor("B", TensorProto.INT8, [k, 16], np.full((k, 16), 127, np.int8).tobytes(), raw=True)
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "saturation_probe",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [4, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [4, 16])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path


def run_saturation_probe(path: str) -> dict:
    """Run the probe in this process: `saturates` is True exactly when MLAS uses VPMADDUBSW here."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    k = session.get_inputs()[0].shape[1]
    got = int(session.run(None, {"A": np.full((4, k), 255, np.uint8)})[0][0, 0])
    return {"exact": 255 * 127 * k, "int16_saturated": 32767 * k // 2, "got": got,
            "saturates": got == 32767 * k // 2}


def int8_weights(bundle: Path) -> dict:
    """The range of the bundle's int8 initializers; within [-64, 64] VPMADDUBSW cannot saturate."""
    import onnx

    from review_classifier.shared.bundle import load_bundle
    from review_classifier.training.bundle.quantize import int8_weight_range

    manifest, folder = load_bundle(bundle)
    lo, hi = int8_weight_range(onnx.load(str(folder / manifest.model_file)))
    return {"min": lo, "max": hi, "fits_7bit": -S7_LIMIT <= lo and hi <= S7_LIMIT}


def score_worker(job_file: Path, out_file: Path) -> None:
    """Runs in the child process (native or emulated): CPU features, saturation probe, the bundle's scores."""
    job = json.loads(job_file.read_text(encoding="utf-8"))
    result = {"cpu": read_cpu_features()}
    if job["probe"]:
        result["saturation_probe"] = run_saturation_probe(job["probe"])
    if job["x64quantprecision"]:
        _ask_for_x64quantprecision()
    from review_classifier.edge.model import EdgeClassifier

    start = time.perf_counter()
    clf = EdgeClassifier(job["bundle"], threads=job["threads"], batch_size=job["batch_size"])
    loaded = time.perf_counter()
    probs = clf.predict_proba(job["texts"])
    result |= {"labels": clf.labels, "probs": probs.tolist(), "load_s": loaded - start,
               "score_s": time.perf_counter() - loaded}
    out_file.write_text(json.dumps(result), encoding="utf-8")


def _ask_for_x64quantprecision() -> None:
    """Make every onnxruntime session of this process set `session.x64quantprecision` (the edge runtime does not)."""
    import onnxruntime as ort

    class Options(ort.SessionOptions):
        def __init__(self):
            super().__init__()
            self.add_session_config_entry("session.x64quantprecision", "1")

    ort.SessionOptions = Options


def find_qemu() -> str:
    for name in QEMU_NAMES:
        if path := shutil.which(name):
            return path
    raise SystemExit(f"avx2_check: qemu-x86_64 not found on PATH; install it with `{INSTALL_HINT}` "
                     "(Debian/Ubuntu) and rerun")


def qemu_version(qemu: str) -> str:
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else ""


def score(bundle: Path, texts: list[str], work: Path, threads: int, batch_size: int, emulate: list[str] | None = None,
          probe: Path | None = None, x64quantprecision: bool = False) -> dict:
    """Score texts in a fresh process (under `emulate`, e.g. [qemu, -cpu, Haswell], when given)."""
    job, out = work / "job.json", work / "out.json"
    job.write_text(json.dumps({"bundle": str(bundle), "texts": texts, "threads": threads, "batch_size": batch_size,
                               "probe": str(probe) if probe else None, "x64quantprecision": x64quantprecision}),
                   encoding="utf-8")
    out.unlink(missing_ok=True)
    cmd = [*(emulate or []), sys.executable, "-m", "benchmarks.avx2_check", "--worker", str(job), str(out)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - start
    if p.returncode != 0 or not out.is_file():
        # qemu warns once per CPU feature TCG cannot emulate (pcid, x2apic...); not errors
        err = [line for line in p.stderr.splitlines() if "TCG doesn't support requested feature" not in line]
        where = "under " + " ".join(emulate) if emulate else "natively"
        raise SystemExit(f"avx2_check: scoring {bundle} {where} failed ({p.returncode}): {' | '.join(err[-5:])}")
    return json.loads(out.read_text(encoding="utf-8")) | {"wall_s": wall}


def compare(a: dict, b: dict) -> dict:
    """Label agreement and max |probability difference| of two score() results on the same texts."""
    la, lb = predicted(a), predicted(b)
    diff = max((abs(x - y) for ra, rb in zip(a["probs"], b["probs"]) for x, y in zip(ra, rb)), default=0.0)
    return {"label_agreement": agreement(la, lb), "max_prob_diff": diff,
            "flipped": [i for i, (x, y) in enumerate(zip(la, lb)) if x != y]}


def predicted(run: dict) -> list[str]:
    return [run["labels"][max(range(len(row)), key=row.__getitem__)] for row in run["probs"]]


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--int8-bundle", type=Path)
    ap.add_argument("--fp32-bundle", type=Path, help="also compare AVX2 int8 with native fp32")
    ap.add_argument("--data", type=Path, default=DATA, help="gzipped CSV with review,sentiment columns")
    ap.add_argument("--n", type=int, default=48, help="reviews scored (emulation is ~20-150x slower)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpu", default="Haswell", help="QEMU CPU model without AVX-512/VNNI (qemu-x86_64 -cpu help)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads, the same for every run")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--atol", type=float, default=0.02, help="largest |probability difference| AVX2 vs native accepted")
    ap.add_argument("--x64quantprecision", action="store_true",
                    help="also score under emulation with onnxruntime's session.x64quantprecision=1")
    ap.add_argument("--output", type=Path, default=RESULTS)
    ap.add_argument("--worker", nargs=2, type=Path, metavar=("JOB", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        score_worker(*args.worker)
        return None
    if not args.int8_bundle:
        ap.error("give --int8-bundle")
    if platform.machine() not in ("x86_64", "AMD64"):
        raise SystemExit(f"avx2_check: needs an x86-64 host, this is {platform.machine()}")
    qemu = find_qemu()
    emulate = [qemu, "-cpu", args.cpu]
    go_offline()

    from review_classifier.shared.atomic import atomic_write_text
    from review_classifier.shared.bundle import load_bundle

    manifest, _ = load_bundle(args.int8_bundle)
    texts, truth = load_sample(args.data, args.n, args.seed)
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        probe = write_saturation_probe(work / "saturation_probe.onnx")
        run = functools.partial(score, texts=texts, work=work, threads=args.threads, batch_size=args.batch_size)
        runs["int8_native"] = run(args.int8_bundle, probe=probe)
        runs["int8_avx2"] = run(args.int8_bundle, emulate=emulate, probe=probe)
        emulated = runs["int8_avx2"]["cpu"]
        still = [f for f in MUST_BE_ABSENT if f in emulated["features"]]
        if still or not emulated["u8s8_kernel"].startswith("avx2"):
            raise SystemExit(f"avx2_check: `-cpu {args.cpu}` is not an AVX2-only CPU: it has {still or 'no AVX2'} "
                             f"(MLAS would use {emulated['u8s8_kernel']}); pick another, e.g. Haswell")
        if args.x64quantprecision:
            runs["int8_avx2_x64quantprecision"] = run(args.int8_bundle, emulate=emulate, x64quantprecision=True)
        if args.fp32_bundle:
            runs["fp32_native"] = run(args.fp32_bundle)

    quant = manifest.compression.get("quantization", {})
    native_vs_fp32 = compare(runs["int8_native"], runs["fp32_native"]) if args.fp32_bundle else None
    result = {
        "provenance": provenance({"texts": data_file(args.data)}, threads=args.threads) | {
            "n": len(texts), "seed": args.seed, "batch_size": args.batch_size, "qemu": qemu_version(qemu),
            "qemu_cpu": args.cpu},
        "bundles": {"int8": str(args.int8_bundle), "fp32": str(args.fp32_bundle) if args.fp32_bundle else None,
                    "base_model": manifest.base_model_name, "max_length": manifest.policy.max_length,
                    "manifest_reduce_range": quant.get("reduce_range"), "approach": quant.get("approach"),
                    "chosen": quant.get("chosen")},
        "int8_weights": int8_weights(args.int8_bundle),
        "cpu": {"native": runs["int8_native"]["cpu"], "emulated": emulated},
        "saturation_probe": {"native": runs["int8_native"]["saturation_probe"],
                             "emulated": runs["int8_avx2"]["saturation_probe"]},
        "int8_avx2_vs_int8_native": compare(runs["int8_avx2"], runs["int8_native"]),
        "int8_avx2_x64quantprecision_vs_int8_native": (
            compare(runs["int8_avx2_x64quantprecision"], runs["int8_native"]) if args.x64quantprecision else None),
        "int8_avx2_vs_fp32_native": compare(runs["int8_avx2"], runs["fp32_native"]) if args.fp32_bundle else None,
        "int8_native_vs_fp32_native": native_vs_fp32,
        "accuracy": {name: agreement(predicted(r), truth) for name, r in runs.items()
                     if set(truth) <= set(r["labels"])},
        "seconds": {name: {k: r[k] for k in ("load_s", "score_s", "wall_s")} for name, r in runs.items()},
        "emulation_slowdown": runs["int8_avx2"]["score_s"] / max(runs["int8_native"]["score_s"], 1e-9),
        "speed_note": SPEED_NOTE,
        "atol": args.atol,
    }
    result["ok"] = result["int8_avx2_vs_int8_native"]["max_prob_diff"] <= args.atol
    atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
    print(summary(result))
    if not result["ok"]:
        raise SystemExit(f"avx2_check: AVX2 int8 differs from native int8 by "
                         f"{result['int8_avx2_vs_int8_native']['max_prob_diff']:.4f} > --atol {args.atol}")
    return result


def summary(r: dict) -> str:
    nat, emu, p = r["cpu"]["native"], r["cpu"]["emulated"], r["provenance"]
    w, sat = r["int8_weights"], r["saturation_probe"]

    def cmp(c: dict | None) -> str:
        return f"{c['label_agreement']:.4f} label agreement, max |prob diff| {c['max_prob_diff']:.2e}" if c else "n/a"

    lines = [f"AVX2-only check of {r['bundles']['int8']} ({p['n']} reviews, max_length {r['bundles']['max_length']})",
             f"- native CPU ({p['machine']['cpu']}): {' '.join(nat['features'])} -> MLAS U8S8 {nat['u8s8_kernel']}",
             f"- emulated ({p['qemu']}, -cpu {p['qemu_cpu']}): {' '.join(emu['features'])}; xcr0 {emu['xcr0']} "
             f"-> MLAS U8S8 {emu['u8s8_kernel']}",
             f"- absent under emulation: {', '.join(f for f in MUST_BE_ABSENT if f not in emu['features'])}",
             f"- saturation probe (MatMulInteger 255 x 127): native {sat['native']['got']}, emulated "
             f"{sat['emulated']['got']} (exact {sat['native']['exact']}, "
             f"int16-saturated {sat['native']['int16_saturated']})",
             f"- int8 weights in [{w['min']}, {w['max']}] ("
             f"{'fits 7 bits' if w['fits_7bit'] else 'wider than 7 bits: can saturate VPMADDUBSW'}); "
             f"manifest reduce_range {r['bundles']['manifest_reduce_range']}",
             f"- int8 AVX2 vs int8 native: {cmp(r['int8_avx2_vs_int8_native'])}"]
    if r["int8_avx2_x64quantprecision_vs_int8_native"]:
        lines.append(f"- int8 AVX2 with session.x64quantprecision=1 vs int8 native: "
                     f"{cmp(r['int8_avx2_x64quantprecision_vs_int8_native'])}")
    lines.append(f"- int8 AVX2 vs fp32 native: {cmp(r['int8_avx2_vs_fp32_native'])} "
                 f"(int8 native vs fp32 native: {cmp(r['int8_native_vs_fp32_native'])})")
    if r["accuracy"]:
        lines.append("- accuracy on these reviews: " + ", ".join(f"{k} {v:.4f}" for k, v in r["accuracy"].items()))
    lines += ["- scoring seconds: " + ", ".join(f"{k} {v['score_s']:.2f}" for k, v in r["seconds"].items())
              + f" (emulation {r['emulation_slowdown']:.0f}x slower)",
              f"- note: {r['speed_note']}",
              f"- verdict: {'OK' if r['ok'] else 'FAILED'} (max |prob diff| AVX2 vs native int8 <= {r['atol']})"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
