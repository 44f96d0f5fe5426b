"""precision = "auto": the hardware check forced both ways, and what a run records."""
from __future__ import annotations

import json

import pytest

import review_classifier.training.fit.precision as precision
from review_classifier.shared.errors import ClassifierError
from review_classifier.training.fit.precision import choose_precision

AVX2_ONLY = ["avx2", "fma"]
AVX512_BF16 = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"]
AMX = ["avx2", "avx512f", "amx_tile", "amx_bf16", "amx_int8"]


def test_auto_on_cpus_with_and_without_native_bf16():
    avx2 = choose_precision("auto", "cpu", isa=AVX2_ONLY)
    assert avx2.used == "fp32" and "no AVX512_BF16 or AMX" in avx2.reason and "avx2, fma" in avx2.reason
    assert not avx2.warning
    for isa in (AVX512_BF16, AMX):
        native = choose_precision("auto", "cpu", isa=isa)
        assert native.used == "bf16" and "natively" in native.reason


def test_auto_on_cuda():
    assert choose_precision("auto", "cuda", cuda_bf16=True).used == "bf16"
    assert choose_precision("auto", "cuda", cuda_bf16=False).used == "fp16"
    assert choose_precision("fp32", "cuda", cuda_bf16=True).used == "fp32"


def test_explicit_bf16_on_an_emulating_cpu_is_kept_with_a_measured_warning(monkeypatch):
    calls = []
    monkeypatch.setattr(precision, "measure_bf16_cost", lambda: calls.append(1) or 7.25)
    c = choose_precision("bf16", "cpu", isa=AVX2_ONLY)
    assert c.used == "bf16" and calls == [1]
    assert "emulated" in c.warning and "7.2x slower" in c.warning and "precision=auto picks fp32" in c.warning
    native = choose_precision("bf16", "cpu", isa=AVX512_BF16)
    assert native.used == "bf16" and not native.warning and calls == [1]   # no measurement needed there


def test_measured_bf16_cost_is_a_real_ratio():
    ratio = precision.measure_bf16_cost(rows=64, inner=64, outer=128, repeats=2)
    assert ratio > 0 and ratio == ratio   # a finite, positive ratio of two timings


def test_fp16_on_cpu_is_refused():
    with pytest.raises(ClassifierError, match="fp16 needs a CUDA GPU"):
        choose_precision("fp16", "cpu", isa=AVX512_BF16)


@pytest.mark.parametrize("isa, used", [(AVX2_ONLY, "fp32"), (AVX512_BF16, "bf16")])
def test_fit_records_the_choice(tiny_model_dir, tmp_path, monkeypatch, isa, used):
    from review_classifier.training.fit.loop import fit
    from review_classifier.training.fit.model import load_model
    from tests.training.fit.builders import tiny_cfg, toy_tokenized

    monkeypatch.setattr(precision, "cpu_isa", lambda: isa)
    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=64, n_valid=16)
    cfg = tiny_cfg(tiny_model_dir, tmp_path, "epochs=1", "precision=auto", "max_steps=2")
    logged = []
    result = fit(cfg, load_model(cfg), tokenized, tmp_path, tokenizer=tok, log=logged.append)
    saved = json.loads((tmp_path / "precision.json").read_text())
    assert saved["requested"] == "auto" and saved["used"] == used
    assert result.precision == {k: v for k, v in saved.items() if k not in ("cpu", "machines")}
    assert any(m.startswith(f"precision: {used} (asked: auto;") for m in logged)


def test_a_run_resumed_on_another_cpu_class_says_so(tiny_model_dir, tmp_path, monkeypatch):
    """Steps on an AVX512_BF16 machine (bf16), then a resume on an AVX2-only one (fp32): the
    run goes on, the log names both, and precision.json lists both machines in order."""
    from review_classifier.training.fit.loop import fit
    from review_classifier.training.fit.model import load_model
    from tests.training.fit.builders import tiny_cfg, toy_tokenized

    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=64, n_valid=16)
    runs = []
    for isa, steps in ((AVX512_BF16, 2), (AVX2_ONLY, 4)):
        monkeypatch.setattr(precision, "cpu_isa", lambda isa=isa: isa)
        monkeypatch.setattr("review_classifier.shared.provenance.cpu_isa", lambda isa=isa: isa)
        cfg = tiny_cfg(tiny_model_dir, tmp_path, "epochs=1", "precision=auto", "checkpoint_every=1",
                       f"max_steps={steps}")
        logged = []
        fit(cfg, load_model(cfg), tokenized, tmp_path, tokenizer=tok, log=logged.append)
        runs.append(logged)
    assert not any("another machine" in m for m in runs[0])
    moved = [m for m in runs[1] if "continues on another machine" in m]
    assert len(moved) == 1 and "used bf16" in moved[0] and "uses fp32" in moved[0], runs[1]
    assert any(m.startswith("resuming from") and "step 2" in m for m in runs[1])
    saved = json.loads((tmp_path / "precision.json").read_text())
    assert [m["used"] for m in saved["machines"]] == ["bf16", "fp32"]
