"""shared.cache: one cache root for every cache of the project."""
from __future__ import annotations

from pathlib import Path

from review_classifier.shared.cache import cache_root


def test_review_classifier_cache_wins_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REVIEW_CLASSIFIER_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.setenv("REVIEW_CLASSIFIER_CACHE", "")
    assert cache_root() == tmp_path / "xdg" / "review-classifier"
    monkeypatch.setenv("XDG_CACHE_HOME", "")          # set but empty: as if unset (the XDG spec)
    assert cache_root() == Path(tmp_path / "home" / ".cache" / "review-classifier")


def test_the_training_data_cache_and_the_model_cache_share_the_root(monkeypatch, tmp_path):
    from review_classifier.training.config.settings import TrainConfig
    from review_classifier.training.data.sources import cache_root as data_cache

    monkeypatch.setenv("REVIEW_CLASSIFIER_CACHE", str(tmp_path / "c"))
    assert data_cache(TrainConfig()) == tmp_path / "c"
    assert data_cache(TrainConfig(cache_dir=str(tmp_path / "own"))) == tmp_path / "own"
