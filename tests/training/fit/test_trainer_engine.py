"""The Trainer variant: the precision it trains at comes from the config, and its rate counts training only."""
from __future__ import annotations

import torch

from review_classifier.training.fit.model import load_model
from review_classifier.training.fit.trainer_engine import fit_with_trainer
from tests.training.fit.builders import tiny_cfg, toy_tokenized


def autocast_seen(cfg, tokenized, tok, out):
    """Whether forward passes in training ran under CPU autocast, and the fit's result."""
    model = load_model(cfg)
    seen: set[bool] = set()
    model.register_forward_hook(lambda m, i, o: seen.add(torch.is_autocast_enabled("cpu")) if m.training else None)
    result = fit_with_trainer(cfg, model, tokenized, out, tokenizer=tok, log=lambda m: None)
    return seen, result


def test_precision_follows_the_config_not_an_earlier_trainer_or_the_environment(tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")     # as a bf16 Trainer leaves it
    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=64, n_valid=16)
    fp32, result = autocast_seen(tiny_cfg(tiny_model_dir, tmp_path / "a", "epochs=1", "engine=trainer"),
                               tokenized, tok, tmp_path / "a")
    assert fp32 == {False}
    assert result.samples_per_second > 0
    bf16, _ = autocast_seen(tiny_cfg(tiny_model_dir, tmp_path / "b", "epochs=1", "engine=trainer", "precision=bf16"),
                            tokenized, tok, tmp_path / "b")
    assert bf16 == {True}
    fp32_again, _ = autocast_seen(tiny_cfg(tiny_model_dir, tmp_path / "c", "epochs=1", "engine=trainer"),
                                  tokenized, tok, tmp_path / "c")
    assert fp32_again == {False}


def test_samples_per_second_leaves_out_the_evaluation(tiny_model_dir, tmp_path, monkeypatch):
    import time

    from transformers import Trainer

    monkeypatch.chdir(tmp_path)
    evaluate = Trainer.evaluate

    def slow_evaluate(self, *a, **k):
        time.sleep(2.0)
        return evaluate(self, *a, **k)

    monkeypatch.setattr(Trainer, "evaluate", slow_evaluate)
    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=64, n_valid=16)
    _, result = autocast_seen(tiny_cfg(tiny_model_dir, tmp_path / "a", "epochs=1", "engine=trainer"),
                              tokenized, tok, tmp_path / "a")
    # 64 samples; the run took 2 s of evaluation on top of the training the rate counts
    assert 64 / result.samples_per_second < result.train_seconds - 1.9


def test_the_trainer_refuses_freezing_and_resumes_only_its_own_run(tiny_model_dir, tmp_path, monkeypatch):
    import pytest

    from review_classifier.shared.errors import ClassifierError
    from review_classifier.training.config.settings import load_config
    from review_classifier.training.fit.run import run_training
    from tests.conftest import write_toy_csv

    monkeypatch.chdir(tmp_path)
    tokenized, tok = toy_tokenized(tiny_model_dir, n_train=64, n_valid=32)
    frozen = tiny_cfg(tiny_model_dir, tmp_path / "f", "engine=trainer", "freeze_epochs=1")
    with pytest.raises(ClassifierError, match="engine=trainer does not freeze layers"):
        fit_with_trainer(frozen, load_model(frozen), tokenized, tmp_path / "f", tokenizer=tok)
    data = write_toy_csv(tmp_path / "d.csv", 200, seed=4)
    sets = [f"model={tiny_model_dir}", f"data={data}", f"output_dir={tmp_path / 'run'}", "engine=trainer",
            "epochs=1", "max_length=48", "tensorboard=false", "precision=fp32", "reduce_ratio=1.0",
            f"cache_dir={tmp_path / 'cache'}"]
    run_training(load_config("tiny", sets))
    assert list((tmp_path / "run" / "trainer").glob("checkpoint-*"))
    with pytest.raises(ClassifierError, match=r"checkpoint-\d+ is a checkpoint of another run \(lr: "):
        run_training(load_config("tiny", sets + ["lr=0.5"]))
    assert run_training(load_config("tiny", sets + ["lr=0.5"]), restart=True)["engine"] == "trainer"


TRAINER_SCRIPT = """
import json, os, signal, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from transformers import Trainer, TrainerCallback
from tests.training.fit.builders import toy_tokenized, tiny_cfg
from review_classifier.training.fit.model import load_model
from review_classifier.training.fit.trainer_engine import fit_with_trainer

model_dir, out, kill = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
where, _, nth = kill.partition(":")
if where == "saved":      # right after checkpoint-n is saved (and the ones over the limit removed)
    class DieAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == int(nth):
                os.kill(os.getpid(), signal.SIGKILL)

    init = Trainer.__init__
    def init_dying_after_save(self, *a, **k):
        init(self, *a, **k)
        self.add_callback(DieAfterSave())
    Trainer.__init__ = init_dying_after_save
tokenized, tok = toy_tokenized(model_dir, n_train=320, n_valid=32)
cfg = tiny_cfg(model_dir, out, "engine=trainer", "epochs=2", "checkpoint_every=3", "batch_size=8", "patience=2")
res = fit_with_trainer(cfg, load_model(cfg), tokenized, out, tokenizer=tok, log=lambda m: print(m, flush=True))
print("DONE", json.dumps([{{k: r[k] for k in ("epoch", "step", "valid_accuracy", "valid_macro_f1")}}
                         for r in res.history]), flush=True)
"""


def test_the_trainer_checkpoints_every_n_steps_and_a_killed_run_resumes_to_the_same_result(tiny_model_dir, tmp_path):
    import json
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import pytest
    from safetensors.torch import load_file

    script = tmp_path / "run.py"
    script.write_text(TRAINER_SCRIPT.format(root=str(Path(__file__).resolve().parents[3])))

    def train(out: Path, kill: str = "none") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(tiny_model_dir), str(out), kill],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)

    def checkpoints(out: Path) -> list[int]:
        return sorted(int(p.name.split("-")[1]) for p in (out / "trainer").glob("checkpoint-*"))

    ref = train(tmp_path / "ref")
    assert ref.returncode == 0, ref.stdout + ref.stderr
    # every 3 steps and at each epoch end (40 steps an epoch); 2 kept, plus the best epoch's
    kept = checkpoints(tmp_path / "ref")
    assert kept[-1] == 80 and (set(kept) - {40, 80}) <= {78} and len(kept) <= 3, kept

    out = tmp_path / "cut"
    killed = train(out, "saved:45")                             # epoch 2, after epoch 1's evaluation
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert checkpoints(out)[-1] == 45, checkpoints(out)          # the one a rerun resumes from
    state = json.loads((out / "trainer" / "checkpoint-45" / "trainer_state.json").read_text())
    assert state["global_step"] == 45 and state["best_metric"] is not None   # epoch 1's F1, restored on resume
    again = train(out)
    assert again.returncode == 0, again.stdout + again.stderr
    got = json.loads(again.stdout.split("DONE", 1)[1])
    want = json.loads(ref.stdout.split("DONE", 1)[1])
    assert [r["step"] for r in got] == [40, 80]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-6)
    a, b = load_file(str(out / "best" / "model.safetensors")), load_file(str(tmp_path / "ref" / "best" / "model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in b) < 1e-5
