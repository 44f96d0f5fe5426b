"""Training time from TensorBoard step events across resumes, and collecting a run into results/."""
from __future__ import annotations

import json


from benchmarks.collect_run import collect, main
from review_classifier.training.fit.plots import timed_steps


def write_steps(tb, walls: dict[int, float]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tb))
    for step, wall in walls.items():
        w.add_scalar("train/loss", 1.0, step, walltime=wall)
    w.close()


def test_timed_steps_skips_stops_and_counts_redone_steps_once(tmp_path):
    tb = tmp_path / "tb"
    write_steps(tb, {1: 100.0, 2: 102.0, 3: 104.0, 4: 106.0})       # first process: 2 s a step
    write_steps(tb, {4: 5000.0, 5: 5003.0, 6: 5006.0})              # resumed an hour later, redid step 4
    t = timed_steps(tb)
    # gaps 1-2, 2-3 (2 s each), 3-4 uses the redone step 4 (4896 s: a stop, left out), 4-5, 5-6 (3 s each)
    assert t == {"seconds": 10.0, "steps_timed": 4, "seconds_per_step": 2.5}
    assert timed_steps(tmp_path / "absent") == {"seconds": 0.0, "steps_timed": 0, "seconds_per_step": None}


def test_collect_copies_results_and_adds_timing(tmp_path):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "best" / "model.safetensors").write_bytes(b"x" * 1234)
    (run / "config.json").write_text(json.dumps({"batch_size": 16}))
    (run / "results.json").write_text(json.dumps({
        "best_dir": str(run / "best"), "epochs_run": 1, "history": [{"step": 10}], "test": {"accuracy": 0.9}}))
    (run / "curves.png").write_bytes(b"png")
    write_steps(run / "tb", {i: 2.0 * i for i in range(1, 11)})
    out = collect(run, "demo", "a note", tmp_path / "results")
    data = json.loads(out.read_text())
    assert out.name == "demo_train.json" and data["test"]["accuracy"] == 0.9
    assert data["model_bytes"] == 1234 and data["batch_size"] == 16 and data["train_note"] == "a note"
    assert data["train_timing"] == {"seconds": 18.0, "steps_timed": 9, "seconds_per_step": 2.0,
                                    "epoch_seconds_estimate": 20.0}
    assert (tmp_path / "results" / "demo_curves.png").read_bytes() == b"png"
    assert not (tmp_path / "results" / "demo_confusion.png").exists()
    assert "reproduce" not in data
    again = json.loads(collect(run, "demo", "", tmp_path / "results", reproduce="train-classify train").read_text())
    assert again["reproduce"] == "train-classify train"


def test_collect_without_results_is_a_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path), "--name", "x", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results.json" in err
    assert not (tmp_path / "r").exists()
