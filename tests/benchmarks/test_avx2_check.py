"""benchmarks.avx2_check: MLAS kernel rules, CPUID probe, the qemu hint; the emulated run itself is slow."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from benchmarks import avx2_check
from benchmarks.avx2_check import mlas_u8s8_kernel
from tests.conftest import write_toy_csv

AVX = 0x6
AVX512 = 0x6 | 0xE0
HASWELL = {"sse4_1", "sse4_2", "fma", "osxsave", "avx", "f16c", "avx2"}
SKYLAKE_X = HASWELL | {"avx512f", "avx512dq", "avx512bw", "avx512vl"}


@pytest.mark.parametrize("features, xcr0, kernel", [
    (HASWELL, AVX, "avx2 vpmaddubsw"),
    (HASWELL | {"avx_vnni"}, AVX, "avx-vnni"),
    (SKYLAKE_X, AVX512, "avx512bw vpmaddubsw"),
    (SKYLAKE_X | {"avx512_vnni"}, AVX512, "avx512-vnni"),
    (SKYLAKE_X | {"avx512_vnni"}, AVX, "avx2 vpmaddubsw"),          # OS does not save AVX-512 state
    (SKYLAKE_X | {"avx512_vnni", "amx_tile", "amx_int8"}, AVX512 | 0x60000, "amx"),
    (HASWELL - {"fma"}, AVX, "sse"),
    (HASWELL, 0x3, "sse"),                                          # OS does not save AVX state
])
def test_mlas_kernel_follows_cpuid_rules(features, xcr0, kernel):
    assert mlas_u8s8_kernel(features, xcr0).startswith(kernel)


def test_cpuid_probe_agrees_with_proc_cpuinfo_natively():
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), None)
    if flags is None:
        pytest.skip("no x86 /proc/cpuinfo")
    seen = avx2_check.read_cpu_features()
    for name in ("avx", "fma", "avx2", "avx512f"):
        assert (name in seen["features"]) == (name in flags), name


def test_missing_qemu_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr(avx2_check.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as e:
        avx2_check.main(["--int8-bundle", "nowhere"])
    assert "apt-get install qemu-user" in str(e.value) and "\n" not in str(e.value)


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny random BERT as an fp32 bundle and a dynamic-int8 bundle with 7-bit weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from review_classifier.shared.bundle import load_bundle, seal_bundle
    from tests.edge.conftest import export_bundle

    root = tmp_path_factory.mktemp("avx2")
    fp32 = root / "fp32"
    export_bundle(fp32, ["negative", "positive"], ["input_ids", "attention_mask"])
    manifest, _ = load_bundle(fp32)
    int8 = root / "int8"
    int8.mkdir()
    quantize_dynamic(str(fp32 / "model.onnx"), str(int8 / "model.onnx"), weight_type=QuantType.QInt8,
                     reduce_range=True)
    shutil.copy(fp32 / "tokenizer.json", int8 / "tokenizer.json")
    manifest.precision = "int8"
    manifest.compression = {"quantization": {"approach": "dynamic", "reduce_range": True}}
    seal_bundle(int8, manifest)
    return int8, fp32


@pytest.mark.slow
@pytest.mark.skipif(not any(map(shutil.which, avx2_check.QEMU_NAMES)), reason="qemu-x86_64 is not installed")
def test_emulated_avx2_run_hides_avx512_and_agrees(tiny_int8, tmp_path):
    int8, fp32 = tiny_int8
    data = tmp_path / "reviews.csv.gz"
    data.write_bytes(gzip.compress(write_toy_csv(tmp_path / "reviews.csv", 12).read_bytes()))
    out = tmp_path / "avx2_check.json"
    r = avx2_check.main(["--int8-bundle", str(int8), "--fp32-bundle", str(fp32), "--data", str(data), "--n", "12",
                         "--output", str(out)])
    emulated = r["cpu"]["emulated"]
    assert not {"avx512f", "avx512_vnni", "avx_vnni", "amx_int8"} & set(emulated["features"])
    assert "avx2" in emulated["features"] and emulated["u8s8_kernel"].startswith("avx2")
    assert r["saturation_probe"]["emulated"]["saturates"]            # the VPMADDUBSW kernel really ran
    assert r["int8_weights"]["fits_7bit"] and r["int8_weights"]["max"] > 0
    same = r["int8_avx2_vs_int8_native"]
    assert same["label_agreement"] == 1.0 and same["max_prob_diff"] < 1e-3 and r["ok"]
    assert r["int8_avx2_vs_fp32_native"]["label_agreement"] >= 11 / 12
    assert r["provenance"]["n"] == 12 and out.is_file()
