"""Where a published figure came from: command, git commit, package versions, machine, data."""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

PACKAGES = ("review-classifier", "torch", "transformers", "datasets", "evaluate", "onnx", "onnxruntime",
            "onnx-neural-compressor", "optimum", "tokenizers", "numpy", "scikit-learn")


def package_versions(packages=PACKAGES) -> dict[str, str]:
    out = {}
    for p in packages:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = "absent"
    return out


def git_commit() -> str:
    """Short commit of the checkout, with '-dirty' when tracked files differ from it."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=here, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=here, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + ("-dirty" if commit and dirty else "")


# Instruction sets that decide how fast this project's kernels run (names as /proc/cpuinfo has them).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_vp2intersect",
             "amx_tile", "amx_bf16", "amx_int8")


def _cpuinfo_field(name: str) -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.split(":", 1)[0].strip() == name)
    except (OSError, StopIteration):
        return ""


def cpu_isa() -> list[str]:
    """The instruction sets of ISA_FLAGS this CPU reports, as detected (never assumed)."""
    flags = set(_cpuinfo_field("flags").split())
    return [f for f in ISA_FLAGS if f in flags]


def cpu_class(isa: list[str] | None = None) -> str:
    """A short name for the CPU class a figure belongs to, from its detected instruction sets."""
    isa = cpu_isa() if isa is None else isa
    if "amx_int8" in isa or "amx_bf16" in isa:
        return "AMX"
    if "avx512_vnni" in isa:
        return "AVX-512 VNNI" + (" + BF16" if "avx512_bf16" in isa else "")
    if "avx512f" in isa:
        return "AVX-512"
    if "avx2" in isa:
        return "AVX2" + (" + AVX-VNNI" if "avx_vnni" in isa else "")
    return "no AVX2"


def cpu_slug(isa: list[str] | None = None) -> str:
    """cpu_class as a file-name part: results/bench_edge_<slug>.json keeps each CPU class's figures."""
    return cpu_class(isa).split(" + ")[0].lower().replace(" ", "-").replace("-512", "512")


def machine() -> dict:
    isa = cpu_isa()
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu": _cpuinfo_field("model name") or platform.processor(),
            "cpus": len(os.sched_getaffinity(0)), "isa": isa, "cpu_class": cpu_class(isa)}


def data_file(source: str | os.PathLike) -> dict:
    """A data source as named, plus its resolved path and sha256 when it is a file."""
    from review_classifier.shared.bundle import sha256_file

    path = Path(source).expanduser()
    entry: dict = {"source": str(source)}
    if path.is_file():
        entry.update(path=str(path.resolve()), sha256=sha256_file(path))
    return entry


def provenance(data: dict | None = None, packages=PACKAGES, **extra) -> dict:
    """One dict to store next to every published figure."""
    argv = getattr(sys, "orig_argv", sys.argv)  # keeps "-m module"
    return {"command": shlex.join([Path(argv[0]).name] + argv[1:]), "git_commit": git_commit(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": package_versions(packages), "machine": machine(), "data": data or {}, **extra}
