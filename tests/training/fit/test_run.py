"""End to end: the training job on toy data with a tiny random model (manual loop, Trainer, DDP)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from review_classifier.training.config.settings import load_config
from review_classifier.training.fit.run import run_training
from tests.conftest import write_toy_csv
from tests.training.fit.builders import ROOT, run_cli


def toy_overrides(model_dir: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [f"model={model_dir}", f"data={data}", f"output_dir={out}", f"cache_dir={out.parent / 'cache'}",
            "max_length=64", "epochs=4", "batch_size=16", "lr=3e-3", "precision=fp32", "patience=0",
            "warmup_ratio=0", "reduce_ratio=1.0", "sample_predictions=3", *extra]


@pytest.fixture(scope="module")
def toy_800(tmp_path_factory) -> Path:
    return write_toy_csv(tmp_path_factory.mktemp("toy800") / "reviews.csv", 800, seed=3)


def test_manual_engine_end_to_end(tiny_model_dir, toy_800, tmp_path):
    cfg = load_config("tiny", toy_overrides(tiny_model_dir, toy_800, tmp_path / "run"))
    results = run_training(cfg)
    out = tmp_path / "run"
    losses = [r["train_loss"] for r in results["history"]]
    assert losses[-1] < 0.7 * losses[0], losses
    assert results["test"]["accuracy"] > 0.85                       # learnable toy task; chance is 0.5
    assert sum(map(sum, results["test"]["confusion_matrix"])) == 80   # 10% test split of 800
    assert {k: v["rows"] for k, v in results["dataset"]["splits"].items()} == {"train": 648, "valid": 72, "test": 80}
    for name in ("config.json", "dataset_report.json", "history.json", "results.json", "confusion.json",
                 "confusion.png", "curves.png", "best/model.safetensors", "last/state.json"):
        assert (out / name).is_file(), name
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "config.json").read_text())
    assert saved["lr"] == 3e-3 and saved["model"] == str(tiny_model_dir)
    assert json.loads((out / "results.json").read_text())["test"] == results["test"]
    assert list((out / "tb").glob("events.out.tfevents.*"))


def test_trainer_engine_end_to_end(tiny_model_dir, toy_800, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config("tiny", toy_overrides(tiny_model_dir, toy_800, tmp_path / "run", "engine=trainer",
                                            "tensorboard=false"))
    results = run_training(cfg)
    assert results["engine"] == "trainer"
    assert len(results["history"]) == 4
    assert results["test"]["accuracy"] > 0.85
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


def test_bad_data_is_one_line_error_naming_file_and_row(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("review,sentiment\ngood film,positive\nawful film,meh\n", encoding="utf-8")
    proc = run_cli("train", "--recipe", "tiny", "--set", f"data={bad}", "--set", f"output_dir={tmp_path / 'o'}")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr, proc.stderr
    err = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(err) == 1 and err[0].startswith("train-classify: error: unknown label 'meh'"), proc.stderr
    assert "bad.csv, row 2 (line 3)" in err[0], err[0]


def test_unknown_config_field_is_rejected():
    proc = run_cli("config", "--recipe", "tiny", "--set", "learning_rate=1")
    assert proc.returncode == 2 and "unknown config field(s) ['learning_rate']" in proc.stderr


def test_ddp_two_cpu_processes(tiny_model_dir, toy_800, tmp_path):
    """The same loop under torchrun with 2 gloo processes, no code change."""
    out = tmp_path / "ddp"
    args = ["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", "-m", "review_classifier.training.cli",
            "train", "--recipe", "tiny"]
    # 5 epochs: with 20 steps an epoch the toy task is learnt in the third or fourth, by seed
    for o in toy_overrides(tiny_model_dir, toy_800, out, "epochs=5", "tensorboard=false"):
        args += ["--set", o]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    # 648 training rows, batch 16 -> 41 batches; 2 ranks -> 20 optimizer steps per epoch each
    assert [r["step"] for r in results["history"]] == [20, 40, 60, 80, 100]
    assert results["test"]["accuracy"] > 0.8


def test_a_rerun_resumes_only_its_own_run(tiny_model_dir, toy_800, tmp_path):
    from review_classifier.shared.errors import ClassifierError

    out, data = tmp_path / "run", tmp_path / "data.csv"
    data.write_bytes(toy_800.read_bytes())
    base = toy_overrides(tiny_model_dir, data, out, "epochs=1", "max_steps=3", "tensorboard=false")
    run_training(load_config("tiny", base))
    with pytest.raises(ClassifierError, match=r"is a checkpoint of another run \(lr: 0.003 -> 0.1\); use a new "
                                              r"output_dir, or --restart to discard it"):
        run_training(load_config("tiny", base + ["lr=0.1"]))
    other = write_toy_csv(tmp_path / "other.csv", 800, seed=9)
    with pytest.raises(ClassifierError, match=r"another run \(data: "):
        run_training(load_config("tiny", base + [f"data={other}"]))
    data.write_bytes(other.read_bytes())                               # the same file name, other reviews
    with pytest.raises(ClassifierError, match="was trained on other data"):
        run_training(load_config("tiny", base))
    data.write_bytes(toy_800.read_bytes())
    more = run_training(load_config("tiny", base + ["max_steps=5"]))   # a field that may change
    assert [r["step"] for r in more["history"]] == [3, 5]
    fresh = run_training(load_config("tiny", base + ["lr=0.1"]), restart=True)
    assert [r["step"] for r in fresh["history"]] == [3]
    assert json.loads((out / "config.json").read_text())["lr"] == 0.1
    r = run_cli("train", "--recipe", "tiny", *[f"--set={o}" for o in base])   # the CLI: one line, exit 2
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert last.startswith("train-classify: error: ") and "is a checkpoint of another run (lr: 0.1 -> 0.003)" in last


def test_ddp_with_frozen_lower_layers_for_the_first_epoch(tiny_model_dir, toy_800, tmp_path):
    """Freezing changes which parameters get gradients between epochs: DDP must be told."""
    out = tmp_path / "ddp-freeze"
    args = ["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29519", "-m",
            "review_classifier.training.cli", "train", "--recipe", "tiny"]
    for o in toy_overrides(tiny_model_dir, toy_800, out, "epochs=2", "freeze_epochs=1", "freeze_layers=1",
                           "tensorboard=false"):
        args += ["--set", o]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [r["step"] for r in results["history"]] == [20, 40]


def test_the_test_report_has_slices_by_length_and_truncation():
    from review_classifier.training.fit.run import split_slices

    cfg = load_config("tiny")   # max_length 64
    full = [10, 20, 70, 200, 30]
    slices = split_slices(full, np.array([0, 1, 0, 1, 1]), np.array([0, 1, 1, 1, 0]), cfg)
    assert [(r["slice"], r["n"]) for r in slices["by_length"]] == [("1-16", 1), ("17-32", 2), ("65-128", 1),
                                                                   ("129-256", 1)]
    assert [(r["slice"], r["n"], r["correct"]) for r in slices["by_truncation"]] == [("read whole", 3, 2),
                                                                                     ("truncated", 2, 1)]
