"""`precision = "auto"`: bf16 only where the device computes it natively, fp16 only on CUDA,
otherwise fp32. An explicit bf16 on a CPU that would emulate it is kept, with a warning that
states what it costs on this machine (measured on the spot, not quoted)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.provenance import cpu_isa

# CPU instruction sets with native bf16 arithmetic (AVX512_BF16 dot products, AMX tiles).
NATIVE_BF16_ISA = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    requested: str
    used: str
    reason: str
    warning: str = ""

    def to_dict(self) -> dict:
        return {"requested": self.requested, "used": self.used, "reason": self.reason,
                **({"warning": self.warning} if self.warning else {})}


def cpu_has_native_bf16(isa: list[str] | None = None) -> bool:
    return any(f in (cpu_isa() if isa is None else isa) for f in NATIVE_BF16_ISA)


def choose_precision(requested: str, device_type: str, *, cuda_bf16: bool = False,
                     isa: list[str] | None = None) -> PrecisionChoice:
    """The precision a run uses on this device, and why."""
    if device_type == "cuda":
        if requested == "auto":
            if cuda_bf16:
                return PrecisionChoice(requested, "bf16", "CUDA device computes bf16")
            return PrecisionChoice(requested, "fp16", "CUDA device without bf16: fp16 with loss scaling")
        return PrecisionChoice(requested, requested, "as configured")
    if requested == "fp16":
        raise ClassifierError("precision=fp16 needs a CUDA GPU; use auto, bf16 (AVX512_BF16 or AMX) or fp32 on the CPU")
    isa = cpu_isa() if isa is None else isa
    native = cpu_has_native_bf16(isa)
    have = ", ".join(isa) or "none of " + ", ".join(NATIVE_BF16_ISA)
    if requested == "auto":
        if native:
            return PrecisionChoice(requested, "bf16", f"CPU computes bf16 natively ({have})")
        return PrecisionChoice(requested, "fp32",
                               f"CPU has no AVX512_BF16 or AMX (has: {have}): bf16 would be emulated")
    if requested == "bf16" and not native:
        ratio = measure_bf16_cost()
        warning = (f"precision=bf16 on a CPU without AVX512_BF16 or AMX (has: {have}) is emulated: "
                   f"a transformer-sized matrix product ran {ratio:.1f}x slower in bf16 than in fp32 "
                   "here just now; precision=auto picks fp32 on this CPU")
        return PrecisionChoice(requested, "bf16", "as configured", warning)
    return PrecisionChoice(requested, requested, "as configured")


def choose_for_device(requested: str, device) -> PrecisionChoice:
    """choose_precision for a torch device, CPU or CUDA (asks CUDA whether it has bf16)."""
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return choose_precision(requested, device.type, cuda_bf16=bf16)


def measure_bf16_cost(rows: int = 512, inner: int = 384, outer: int = 1536, repeats: int = 5) -> float:
    """Seconds of a bf16-autocast linear layer over seconds in fp32, best of `repeats` each
    (the shape of one MiniLM-L6 feed-forward product on two 256-token reviews)."""
    x = torch.randn(rows, inner)
    layer = torch.nn.Linear(inner, outer)

    def best(bf16: bool) -> float:
        times = []
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            layer(x)
            for _ in range(repeats):
                t = time.perf_counter()
                layer(x)
                times.append(time.perf_counter() - t)
        return min(times)

    return best(True) / max(best(False), 1e-9)
