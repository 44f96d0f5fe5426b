"""train-classify's closing words: which model edge-classify scores with after a run."""
from __future__ import annotations

from review_classifier.training.pipeline import which_model_note


def test_the_pipeline_says_which_model_edge_uses_and_how_to_switch(tmp_path, monkeypatch):
    built = tmp_path / "runs" / "tiny" / "bundles" / "int8"
    monkeypatch.delenv("EDGE_CLASSIFY_MODEL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "nothing-installed"))
    note = which_model_note(built)
    assert "default_model (shipped default)" in note          # the demo never replaces it
    assert f"edge-classify --model {built}" in note and f"EDGE_CLASSIFY_MODEL={built}" in note
    monkeypatch.setenv("EDGE_CLASSIFY_MODEL", str(built))
    assert which_model_note(built).startswith(f"edge-classify uses {built} ($EDGE_CLASSIFY_MODEL)")
