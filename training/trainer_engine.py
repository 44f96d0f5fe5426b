"""The Hugging Face Trainer variant: same config, data, loss and metrics as the manual loop."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from review_classifier.training.config import TrainConfig
from review_classifier.training.fast_dropout import fast_dropout_mode
from review_classifier.training.loop import (FitResult, class_weighted_loss, make_optimizer, make_scheduler, resolve_precision,
                           save_model)
from review_classifier.training.metrics import accuracy_f1


def fit_with_trainer(cfg: TrainConfig, model, tokenized, out_dir: Path, *, tokenizer, log=print) -> FitResult:
    """Train with `transformers.Trainer`; best epoch by valid macro F1 saved to out_dir/best.

    Resumes from out_dir/trainer's last epoch checkpoint (run.check_resume has checked that it
    belongs to this run). Freezing lower layers for the first epochs (freeze_epochs) is the
    manual loop's and refused here. Step checkpoints (checkpoint_every) are the manual loop's
    too: the Trainer saves at each epoch end, as its best-model bookkeeping saves and evaluates
    on one schedule."""
    from review_classifier.shared.errors import ClassifierError

    if cfg.freeze_epochs:
        raise ClassifierError(f"engine=trainer does not freeze layers (freeze_epochs={cfg.freeze_epochs}); "
                              "use engine=manual, or freeze_epochs=0")
    from transformers import (DataCollatorWithPadding, EarlyStoppingCallback, Trainer,
                              TrainingArguments)

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

    def metrics(pred) -> dict:
        return accuracy_f1(np.argmax(pred.predictions, -1), pred.label_ids, cfg.num_labels)

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
        use_cpu=not torch.cuda.is_available(), eval_strategy="epoch", save_strategy="epoch",
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="macro_f1",
        greater_is_better=True, group_by_length=cfg.group_by_length, length_column_name="length",
        seed=cfg.seed, report_to=["tensorboard"] if cfg.tensorboard else [], logging_dir=str(out_dir / "tb"),
        logging_steps=20, disable_tqdm=False, dataloader_num_workers=0, save_safetensors=True,
    )
    timer = _epoch_timer()
    callbacks = [timer] + ([EarlyStoppingCallback(cfg.patience)] if cfg.patience else [])
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
    save_model(trainer.model, tokenizer, out_dir / "best")
    best = max(history, key=lambda r: r["valid_macro_f1"]) if history else {}
    log(f"trainer: {len(history)} epoch(s), best valid macro F1 {best.get('valid_macro_f1', float('nan')):.4f}")
    return FitResult(best_metrics=best, history=history, best_dir=out_dir / "best", epochs_run=len(history),
                     train_seconds=seconds, samples_per_second=timer.samples_per_second(trainer, len(train)),
                     precision=precision.to_dict())


def _epoch_timer():
    """A callback timing training epochs: seconds and optimizer steps inside them, without the
    evaluation and checkpoint saving after each epoch (Trainer's own train_samples_per_second
    counts those; the manual loop's rate does not)."""
    from transformers import TrainerCallback

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
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None
