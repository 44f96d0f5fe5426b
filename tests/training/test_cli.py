"""The export, quantize, evaluate and compression commands through train-classify's typer app (as a user runs them)."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from review_classifier.shared.bundle import load_bundle


def _app():
    from review_classifier.training import cli

    return cli.app


def test_export_then_evaluate_from_the_command_line(tiny_model_dir, toy_csv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app, runner = _app(), CliRunner()
    out = tmp_path / "bundles"
    result = runner.invoke(app, ["export", str(tiny_model_dir), "--out", str(out), "--precision", "int8",
                                 "--recipe", "tiny", "--set", "max_length=48", "--set", "quant_approach=dynamic",
                                 "--data", str(toy_csv), "--archive"])
    assert result.exit_code == 0, result.output
    assert "int8 bundle:" in result.output and "trial(s)" in result.output
    manifest, _ = load_bundle(out / "int8")
    assert manifest.precision == "int8" and (out / "int8.tar.gz").is_file() and not (out / "fp32").exists()

    result = runner.invoke(app, ["evaluate", "--bundle", str(out / "int8"), "--data", str(toy_csv),
                                 "--recipe", "tiny", "--json", str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "macro F1" in result.output and "true \\ pred" in result.output
    assert Path(tmp_path / "eval.json").is_file()


def test_bad_precision_is_a_one_line_user_error(tiny_model_dir, tmp_path):
    from review_classifier.shared.errors import ClassifierError

    result = CliRunner().invoke(_app(), ["export", str(tiny_model_dir), "--out", str(tmp_path / "b"),
                                         "--precision", "int4", "--recipe", "tiny"])
    assert isinstance(result.exception, ClassifierError) and "int8, fp32 or both" in str(result.exception)
