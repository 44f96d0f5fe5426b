"""The hand-written loop: loss weighting, batching, freezing, learning, checkpoint and resume."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from review_classifier.training.fit.loop import fit
from review_classifier.training.fit.model import encoder_layers, load_model
from tests.training.fit.builders import tiny_cfg, toy_tokenized


def test_fit_learns_the_toy_task_and_keeps_the_best_epoch(tiny_model_dir, tmp_path):
    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=640)
    cfg = tiny_cfg(tiny_model_dir, tmp_path, "epochs=5")
    model = load_model(cfg)
    result = fit(cfg, model, tokenized, tmp_path, tokenizer=tok, log=lambda m: None)
    losses = [r["train_loss"] for r in result.history]
    assert len(result.history) == 5
    assert losses[-1] < losses[0] * 0.7, losses
    assert result.best_metrics["valid_accuracy"] > 0.85, result.history     # chance is 0.5
    assert result.best_metrics["valid_macro_f1"] == max(r["valid_macro_f1"] for r in result.history)
    assert (tmp_path / "best" / "model.safetensors").is_file()
    assert (tmp_path / "best" / "tokenizer.json").is_file()
    assert json.loads((tmp_path / "history.json").read_text()) == result.history


def test_frozen_epochs_leave_lower_layers_untouched_then_train_them(tiny_model_dir, tmp_path):
    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=64, n_valid=16)
    cfg = tiny_cfg(tiny_model_dir, tmp_path, "freeze_epochs=1", "freeze_layers=1", "epochs=1")
    model = load_model(cfg)
    emb0 = model.base_model.embeddings.word_embeddings.weight.detach().clone()
    low0 = [p.detach().clone() for p in encoder_layers(model)[0].parameters()]
    top0 = [p.detach().clone() for p in encoder_layers(model)[1].parameters()]
    fit(cfg, model, tokenized, tmp_path / "a", tokenizer=tok, log=lambda m: None)
    assert torch.equal(model.base_model.embeddings.word_embeddings.weight, emb0)
    assert all(torch.equal(a, b) for a, b in zip(encoder_layers(model)[0].parameters(), low0))
    assert not all(torch.equal(a, b) for a, b in zip(encoder_layers(model)[1].parameters(), top0))
    cfg = tiny_cfg(tiny_model_dir, tmp_path, "freeze_epochs=1", "freeze_layers=1", "epochs=2")
    model = load_model(cfg)
    fit(cfg, model, tokenized, tmp_path / "b", tokenizer=tok, log=lambda m: None)
    assert not torch.equal(model.base_model.embeddings.word_embeddings.weight, emb0)
    assert all(p.requires_grad for p in model.parameters())


def test_same_seed_same_result(tiny_model_dir, tmp_path):
    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=64, n_valid=32)
    runs = []
    for i in range(2):
        cfg = tiny_cfg(tiny_model_dir, tmp_path / str(i), "epochs=1")
        runs.append(fit(cfg, load_model(cfg), tokenized, tmp_path / str(i), tokenizer=tok, log=lambda m: None))
    assert runs[0].history[0]["train_loss"] == runs[1].history[0]["train_loss"]


KILL_SCRIPT = """
import json, os, signal, sys
from pathlib import Path
sys.path.insert(0, {root!r})
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from tests.training.fit.builders import toy_tokenized, tiny_cfg
from review_classifier.training.fit import loop
from review_classifier.training.fit.model import load_model

model_dir, out, kill = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
where, _, nth = kill.partition(":")
calls = []

def die_on(n):
    calls.append(1)
    if len(calls) == n:
        os.kill(os.getpid(), signal.SIGKILL)

if where == "write":      # inside the n-th checkpoint: weights written, training state not yet
    save = torch.save
    def killing_save(obj, f, *a, **k):
        if ".last." in str(f):
            die_on(int(nth))
        return save(obj, f, *a, **k)
    torch.save = killing_save
elif where == "swap":     # the n-th checkpoint moved the old last/ aside, the new one not yet in
    replace = os.replace
    def killing_replace(src, dst):
        if Path(dst).name == "last" and ".last." in str(src):
            die_on(int(nth))
        return replace(src, dst)
    os.replace = killing_replace
elif where == "step":     # right before optimizer step n of the run (a resumed run counts on from its checkpoint)
    step = [0]
    load_checkpoint = loop.load_checkpoint
    def counting_load(*a, **k):
        state = load_checkpoint(*a, **k)
        step[0] = state.global_step
        return state
    loop.load_checkpoint = counting_load
    def killing_step(optimizer, args, kwargs):
        step[0] += 1
        if step[0] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
    register_optimizer_step_pre_hook(killing_step)
tokenized, tok = toy_tokenized(model_dir, n_train=320, n_valid=32)
cfg = tiny_cfg(model_dir, out, "epochs=2", "checkpoint_every=3", "batch_size=8")
res = loop.fit(cfg, load_model(cfg), tokenized, out, tokenizer=tok, log=lambda m: print(m, flush=True))
keep = ("epoch", "step", "train_loss", "train_accuracy", "valid_accuracy", "valid_macro_f1")
print("DONE", json.dumps([{{k: r[k] for k in keep}} for r in res.history]), flush=True)
"""


def train_in_child(model_dir: Path, out: Path, kill: str = "none") -> subprocess.CompletedProcess:
    """Train `out` (40 batches an epoch, a checkpoint every 3 steps) in a new process that kills
    itself at `kill` (KILL_SCRIPT's "write:N", "swap:N", "step:N"; "none" runs to the end)."""
    script = out.parent / "kill_script.py"
    script.write_text(KILL_SCRIPT.format(root=str(Path(__file__).resolve().parents[3])))
    return subprocess.run([sys.executable, str(script), str(model_dir), str(out), kill],
                          capture_output=True, text=True, timeout=300)


def history_of(done: subprocess.CompletedProcess) -> list[dict]:
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.split("DONE", 1)[1])


def test_resume_after_kill(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    killed = train_in_child(tiny_model_dir, out, "step:8")      # dies before step 8: last/ holds step 6
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    killed_at = json.loads((out / "last" / "state.json").read_text())
    assert (killed_at["epoch"], killed_at["batch_in_epoch"], killed_at["global_step"]) == (0, 6, 6)
    done = train_in_child(tiny_model_dir, out)
    assert [r["step"] for r in history_of(done)] == [40, 80]    # nothing repeated, nothing skipped
    assert f"resuming from {out / 'last'}: epoch 1, batch 6, step 6" in done.stdout


def test_runs_killed_at_several_points_resume_to_the_uninterrupted_result(tiny_model_dir, tmp_path):
    """Killed inside a checkpoint write, between its two renames, and between steps (in the
    second epoch), then run to the end: the same history and weights as a run never stopped."""
    from safetensors.torch import load_file

    expected = history_of(train_in_child(tiny_model_dir, tmp_path / "ref"))
    out = tmp_path / "cut"
    state = out / "last" / "state.json"
    first = train_in_child(tiny_model_dir, out, "write:3")     # dies writing the checkpoint at step 9
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    assert json.loads(state.read_text())["global_step"] == 6          # the checkpoint before the killed one
    assert list(out.glob(".last.*.tmp"))                                # the killed write's leftovers
    second = train_in_child(tiny_model_dir, out, "swap:2")     # resumes at 6, dies moving in the one at 12
    assert second.returncode == -signal.SIGKILL, second.stdout + second.stderr
    assert "resuming from" in second.stdout and "step 6" in second.stdout
    assert not (out / "last").exists() and (out / ".last.old" / "state.json").is_file()
    third = train_in_child(tiny_model_dir, out, "step:47")     # resumes at 9, dies in epoch 2 before step 47
    assert third.returncode == -signal.SIGKILL, third.stdout + third.stderr
    assert "put back the previous version" in third.stdout and "step 9" in third.stdout   # .last.old restored
    killed_at = json.loads(state.read_text())
    assert (killed_at["epoch"], killed_at["batch_in_epoch"], killed_at["global_step"]) == (1, 5, 45)

    last = train_in_child(tiny_model_dir, out)
    history = history_of(last)
    assert "epoch 2, batch 5, step 45" in last.stdout
    assert not list(out.glob(".last.*"))                                 # nothing left behind
    assert [r["step"] for r in history] == [40, 80]
    for got, want in zip(history, expected):
        assert got == pytest.approx(want, abs=1e-6)
    for name in ("best", "last"):
        a = load_file(str(out / name / "model.safetensors"))
        b = load_file(str(tmp_path / "ref" / name / "model.safetensors"))
        assert max(float((a[k] - b[k]).abs().max()) for k in b) < 1e-6, name


def test_early_stopping_after_patience_epochs_without_gain(tiny_model_dir, tmp_path):
    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=64, n_valid=32)
    # lr ~ 0: valid macro F1 cannot improve after the first epoch
    cfg = tiny_cfg(tiny_model_dir, tmp_path, "epochs=6", "patience=2", "lr=1e-12")
    result = fit(cfg, load_model(cfg), tokenized, tmp_path, tokenizer=tok, log=lambda m: None)
    assert result.stopped_early and result.epochs_run == 3


def test_a_max_steps_stop_resumes_mid_epoch_to_the_uninterrupted_result(tiny_model_dir, tmp_path):
    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=160, n_valid=32)   # 10 batches an epoch
    quiet = []
    whole = tiny_cfg(tiny_model_dir, tmp_path / "whole", "epochs=2", "checkpoint_every=0")
    ref = fit(whole, load_model(whole), tokenized, tmp_path / "whole", tokenizer=tok, log=lambda m: None)
    out = tmp_path / "cut"
    first = tiny_cfg(tiny_model_dir, out, "epochs=2", "max_steps=4", "checkpoint_every=0")
    part = fit(first, load_model(first), tokenized, out, tokenizer=tok, log=lambda m: None)
    assert part.history[-1]["partial_epoch"] == "4/10 batches"
    assert json.loads((out / "last" / "state.json").read_text())["epoch"] == 0   # the epoch is not over
    again = tiny_cfg(tiny_model_dir, out, "epochs=2", "checkpoint_every=0")
    rest = fit(again, load_model(again), tokenized, out, tokenizer=tok, log=quiet.append)
    assert any("resuming from" in m and "epoch 1, batch 4, step 4" in m for m in quiet)
    assert [r["step"] for r in rest.history] == [4, 10, 20]           # nothing skipped, nothing repeated
    assert rest.history[-1]["valid_macro_f1"] == pytest.approx(ref.history[-1]["valid_macro_f1"], abs=1e-6)
    same = tiny_cfg(tiny_model_dir, out, "epochs=2", "checkpoint_every=0")   # a third run: nothing left
    quiet.clear()
    assert fit(same, load_model(same), tokenized, out, tokenizer=tok, log=quiet.append).history == rest.history


def test_early_stopping_is_remembered_across_a_restart(tiny_model_dir, tmp_path):
    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=64, n_valid=32)
    cfg = tiny_cfg(tiny_model_dir, tmp_path, "epochs=6", "patience=2", "lr=1e-12")
    first = fit(cfg, load_model(cfg), tokenized, tmp_path, tokenizer=tok, log=lambda m: None)
    assert first.stopped_early and first.epochs_run == 3
    said = []
    second = fit(cfg, load_model(cfg), tokenized, tmp_path, tokenizer=tok, log=said.append)
    assert second.stopped_early and second.history == first.history
    assert any("already stopped early" in m for m in said)


def test_a_checkpoint_that_does_not_fit_the_model_is_refused(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    from review_classifier.shared.errors import ClassifierError

    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=64, n_valid=32)
    cfg = tiny_cfg(tiny_model_dir, tmp_path, "epochs=1")
    fit(cfg, load_model(cfg), tokenized, tmp_path, tokenizer=tok, log=lambda m: None)
    weights = tmp_path / "last" / "model.safetensors"
    tensors = load_file(str(weights))
    tensors.pop("classifier.weight")
    save_file(tensors, str(weights))
    cfg2 = tiny_cfg(tiny_model_dir, tmp_path, "epochs=2")
    with pytest.raises(ClassifierError, match="does not fit this model .*Missing key.*classifier.weight"):
        fit(cfg2, load_model(cfg2), tokenized, tmp_path, tokenizer=tok, log=lambda m: None)
