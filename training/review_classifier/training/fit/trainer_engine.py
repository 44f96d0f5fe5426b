"""The Hugging Face Trainer variant: same config, data, loss and metrics as the manual loop."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import get_last_checkpoint

from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.metrics import accuracy_macro_f1
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.fit.checkpoints import save_model
from review_classifier.training.fit.device import resolve_precision
from review_classifier.training.fit.fast_dropout import fast_dropout_mode
from review_classifier.training.fit.loop import FitResult
from review_classifier.training.fit.optimization import class_weighted_loss, make_optimizer, make_scheduler


def fit_with_trainer(cfg: TrainConfig, model, tokenized, out_dir: Path, *, tokenizer, log=print) -> FitResult:
    """Train with `transformers.Trainer`; best epoch by valid macro F1 saved to out_dir/best.

    Checkpoints go to out_dir/trainer every `checkpoint_every` optimizer steps and at each
    epoch end; a rerun resumes from the newest (run.check_resume has checked that it belongs
    to this run), early-stopping patience included. The best epoch's weights are written to
    out_dir/best when it is evaluated, so no checkpoint has to be kept for it. Freezing lower
    layers for the first epochs (freeze_epochs) is the manual loop's and refused here."""
    if cfg.freeze_epochs:
        raise ClassifierError(f"engine=trainer does not freeze layers (freeze_epochs={cfg.freeze_epochs}); "
                              "use engine=manual, or freeze_epochs=0")

    out_dir = Path(out_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg, precision = resolve_precision(cfg, device, out_dir, log)
    train = tokenized["train"].remove_columns([c for c in tokenized["train"].column_names
                                               if c not in ("input_ids", "labels", "length")])
    valid = tokenized["valid"].remove_columns([c for c in tokenized["valid"].column_names
                                               if c not in ("input_ids", "labels", "length")])
    loss_of = class_weighted_loss(tokenized["train"]["labels"], cfg.num_labels)
    fast_dropout = cfg.fast_dropout and not torch.cuda.is_available()

    class WeightedTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            with fast_dropout_mode(fast_dropout):
                outputs = model(**inputs)
            loss = loss_of(outputs.logits, labels)
            return (loss, outputs) if return_outputs else loss

        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(sampler, LengthGroupedSampler):
                return _EpochSeededLengthGroupedSampler(sampler, cfg.seed)
            return sampler   # RandomSampler: accelerate's seedable sampler is seeded per epoch already

    def metrics(pred) -> dict:
        return accuracy_macro_f1(pred.label_ids, np.argmax(pred.predictions, -1), cfg.num_labels)

    # TrainingArguments takes its precision from this variable when bf16/fp16 are off, and sets it
    # when they are on: a bf16 Trainer would turn every later fp32 Trainer in the process to bf16.
    # Set from the config while the Trainer is built, then put back.
    saved_precision = os.environ.get("ACCELERATE_MIXED_PRECISION")
    os.environ["ACCELERATE_MIXED_PRECISION"] = {"fp32": "no"}.get(cfg.precision, cfg.precision)
    args = TrainingArguments(
        output_dir=str(out_dir / "trainer"), per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr, weight_decay=cfg.weight_decay, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1, max_grad_norm=cfg.max_grad_norm, bf16=cfg.precision == "bf16", fp16=cfg.precision == "fp16",
        use_cpu=not torch.cuda.is_available(), eval_strategy="epoch",
        save_strategy="steps" if cfg.checkpoint_every else "epoch", save_steps=cfg.checkpoint_every or 500,
        save_total_limit=2, metric_for_best_model="macro_f1", greater_is_better=True,
        restore_callback_states_from_checkpoint=True, group_by_length=cfg.group_by_length, length_column_name="length",
        seed=cfg.seed, report_to=["tensorboard"] if cfg.tensorboard else [], logging_dir=str(out_dir / "tb"),
        logging_steps=20, disable_tqdm=False, dataloader_num_workers=0, save_safetensors=True,
    )
    timer = _epoch_timer()
    best_dir = out_dir / "best"
    callbacks = [timer, _BestSaver(best_dir, tokenizer)] + ([_Patience(cfg.patience)] if cfg.patience else [])
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8,
                                       padding="max_length" if cfg.pad_to_max else True,
                                       max_length=cfg.max_length if cfg.pad_to_max else None)
    # The same optimizer and schedule as the manual loop (Trainer steps the scheduler per
    # optimizer step, so StepLR's period is given in steps).
    optimizer = make_optimizer(cfg, model)
    steps_per_epoch = max(1, int(np.ceil(len(train) / (cfg.batch_size * cfg.grad_accum))))
    if cfg.scheduler == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size * steps_per_epoch, cfg.gamma)
    else:
        scheduler = make_scheduler(cfg, optimizer, steps_per_epoch)
    trainer = WeightedTrainer(model=model, args=args, train_dataset=train, eval_dataset=valid,
                              processing_class=tokenizer, data_collator=collator,
                              compute_metrics=metrics, callbacks=callbacks,
                              optimizers=(optimizer, scheduler))
    if saved_precision is None:
        os.environ.pop("ACCELERATE_MIXED_PRECISION")
    else:
        os.environ["ACCELERATE_MIXED_PRECISION"] = saved_precision
    t0 = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=_last_checkpoint(out_dir / "trainer"))
    seconds = time.perf_counter() - t0
    history, losses = [], {}
    for rec in trainer.state.log_history:
        if "loss" in rec:
            losses[int(np.ceil(rec["epoch"]))] = rec["loss"]
        if "eval_macro_f1" in rec:
            e = int(round(rec["epoch"]))
            history.append({"epoch": e, "step": rec["step"], "train_loss": losses.get(e, out.training_loss),
                            "train_accuracy": None, "train_macro_f1": None,
                            "valid_accuracy": rec["eval_accuracy"], "valid_macro_f1": rec["eval_macro_f1"]})
    if not (best_dir / "config.json").is_file():   # stopped by max_steps before any evaluation
        save_model(trainer.model, tokenizer, best_dir)
    best = max(history, key=lambda r: r["valid_macro_f1"]) if history else {}
    log(f"trainer: {len(history)} epoch(s), best valid macro F1 {best.get('valid_macro_f1', float('nan')):.4f}")
    return FitResult(best_metrics=best, history=history, best_dir=out_dir / "best", epochs_run=len(history),
                     train_seconds=seconds, samples_per_second=timer.samples_per_second(trainer, len(train)),
                     precision=precision.to_dict())


class _BestSaver(TrainerCallback):
    """Writes the model to `best_dir` whenever the valid macro F1 beats the best so far
    (state.best_metric, which the Trainer updates after this and keeps in its checkpoints), and
    asks for a checkpoint at every epoch end as well as every save_steps."""

    def __init__(self, best_dir: Path, tokenizer) -> None:
        self.best_dir, self.tokenizer = best_dir, tokenizer

    def on_epoch_end(self, args, state, control, **kwargs):
        control.should_save = True

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        value = (metrics or {}).get("eval_macro_f1")
        if value is not None and (state.best_metric is None or value > state.best_metric) \
                and state.is_world_process_zero:
            save_model(model, self.tokenizer, self.best_dir)


class _EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """The Trainer's length-grouped order drawn from (seed, epoch) instead of the global RNG, so
    a run resumed mid-epoch skips to the batches it would have seen (the Trainer restores the
    RNG of the step it resumes at, which would shuffle the resumed epoch differently)."""

    def __init__(self, sampler: LengthGroupedSampler, seed: int) -> None:
        super().__init__(sampler.batch_size, lengths=sampler.lengths)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


class _Patience(EarlyStoppingCallback):
    """EarlyStoppingCallback (its counter saved in checkpoints and restored on resume) without
    its warning about load_best_model_at_end: _BestSaver keeps the best weights instead."""

    def on_train_begin(self, args, state, control, **kwargs):
        pass


def _epoch_timer():
    """A callback timing training epochs: seconds and optimizer steps inside them, without the
    evaluation and checkpoint saving after each epoch (Trainer's own train_samples_per_second
    counts those; the manual loop's rate does not)."""
    class EpochTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds, self.steps, self.epochs = 0.0, 0, 0
            self._start, self._first_step = 0.0, 0

        def on_epoch_begin(self, args, state, control, **kwargs):
            self._start, self._first_step = time.perf_counter(), state.global_step

        def on_epoch_end(self, args, state, control, **kwargs):
            self.seconds += time.perf_counter() - self._start
            self.steps += state.global_step - self._first_step
            self.epochs += 1

        def samples_per_second(self, trainer, n_train: int) -> float:
            """Samples a second of training; an epoch's last batch counted as full, capped at the data."""
            per_step = trainer.args.train_batch_size * trainer.args.gradient_accumulation_steps
            samples = min(self.steps * per_step, n_train * self.epochs)
            return samples / self.seconds if self.seconds else 0.0

    return EpochTimer()


def _last_checkpoint(folder: Path) -> str | None:
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None
