"""The hand-written training loop, top to bottom: set-up, resume, then per epoch the batches
(length-grouped), the weighted loss under mixed precision, gradient accumulation and clipping,
the evaluation, the best checkpoint and early stopping.

Runs as one process or under `torchrun` / `accelerate launch` (DDP, gloo on CPU, nccl on GPU)
without code changes: the process group is read from the environment. The pieces it uses live
beside it: runtime (device, precision, DDP, logging), batches, objective (loss, optimizer,
schedule), evaluation, checkpoints.
"""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from review_classifier.shared.atomic import atomic_write_text, recover_interrupted
from review_classifier.training.data.batches import accepts_token_type_ids, iterate_batches, length_grouped_batches
from review_classifier.training.fit.checkpoints import TrainState, load_checkpoint, save_checkpoint, save_model, unwrap
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.fit.evaluation import evaluate_split
from review_classifier.training.fit.fast_dropout import fast_dropout_mode
from review_classifier.training.fit.model import set_lower_frozen
from review_classifier.training.fit.optimization import class_weighted_loss, kd_loss, make_optimizer, make_scheduler
from review_classifier.training.fit.device import (autocast_for, dist_info, gpu_util, log_rank0, quiet,
                                                resolve_precision, seed_everything, setup_device)

LossFn = Callable[[torch.nn.Module, dict], torch.Tensor]
PROBE_SIZE = 2000   # train accuracy/F1 each epoch on a fixed sample (a full pass would double the cost)


@dataclass
class FitResult:
    best_metrics: dict
    history: list[dict]
    best_dir: Path
    epochs_run: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    samples_per_second: float = 0.0
    precision: dict = field(default_factory=dict)   # PrecisionChoice.to_dict()


def fit(cfg: TrainConfig, model, tokenized, out_dir: Path, *, tokenizer=None,
        compute_loss: LossFn | None = None, log=log_rank0) -> FitResult:
    """Train on tokenized["train"], pick the best epoch by tokenized["valid"] macro F1.

    Writes out_dir/best (model + tokenizer), out_dir/last (resumable checkpoint),
    out_dir/history.json and TensorBoard scalars under out_dir/tb. Resumes from
    out_dir/last when it exists.
    """
    # ---- set-up: process, device, precision, data, loss, optimisation
    out_dir = Path(out_dir)
    rank, world, _ = dist_info()
    device = setup_device()
    cfg, precision = resolve_precision(cfg, device, out_dir, log)
    seed_everything(cfg.seed)
    model.to(device)
    pad_id = tokenizer.pad_token_id if tokenizer is not None and tokenizer.pad_token_id is not None else 0
    pad_to = cfg.max_length if cfg.pad_to_max else None
    token_types = accepts_token_type_ids(model)
    train, valid = tokenized["train"], tokenized["valid"]
    lengths = train["length"] if "length" in train.column_names else [len(x) for x in train["input_ids"]]
    train_probe = train.select(sorted(np.random.default_rng(cfg.seed).permutation(len(train))[:PROBE_SIZE].tolist()))
    soft_targets = "teacher_logits" in train.column_names   # distillation: training.compress.teacher
    if compute_loss is None:
        loss_of = class_weighted_loss(train["labels"], cfg.num_labels)
        if soft_targets:
            def compute_loss(m, batch):
                labels, teacher = batch.pop("labels"), batch.pop("teacher_logits")
                return kd_loss(m(**batch).logits, teacher, labels, cfg.distill_temperature, cfg.distill_alpha, loss_of)
        else:
            def compute_loss(m, batch):
                labels = batch.pop("labels")
                return loss_of(m(**batch).logits, labels)

    batches_per_epoch = len(length_grouped_batches(lengths, cfg.batch_size, cfg.seed, 0, False, rank, world))
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer, max(1, batches_per_epoch // cfg.grad_accum))
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    fast_dropout = cfg.fast_dropout and device.type == "cpu"

    # ---- resume: last/ holds the weights, optimizer, schedule, RNG and this state
    last_dir, best_dir = out_dir / "last", out_dir / "best"
    if rank == 0:   # a run killed while writing a checkpoint: its previous version, not a fresh start
        for folder in (last_dir, best_dir):
            if recover_interrupted(folder):
                log(f"{folder}: put back the previous version (a run was stopped while replacing it)")
    if world > 1:
        dist.barrier()
    state = TrainState()
    if (last_dir / "state.json").is_file():
        state = load_checkpoint(last_dir, model, optimizer, scheduler, scaler)
        log(f"resuming from {last_dir}: epoch {state.epoch + 1}, batch {state.batch_in_epoch}, step {state.global_step}")
    if world > 1:
        # frozen layers get no gradient in the first freeze_epochs: DDP must look for them
        model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=cfg.freeze_epochs > 0)
    writer = SummaryWriter(str(out_dir / "tb")) if cfg.tensorboard and rank == 0 else None
    done = state.stopped_early or bool(cfg.max_steps and state.global_step >= cfg.max_steps)
    if done:
        why = "stopped early" if state.stopped_early else f"reached max_steps={cfg.max_steps}"
        log(f"this run already {why} at step {state.global_step}; nothing left to train")

    def checkpoint() -> None:
        save_checkpoint(last_dir, model, optimizer, scheduler, scaler, state)

    # ---- the epochs
    t_start, seen = time.perf_counter(), 0
    for epoch in range(state.epoch, state.epoch if done else cfg.epochs):
        if cfg.freeze_epochs:
            set_lower_frozen(unwrap(model), cfg.freeze_layers, frozen=epoch < cfg.freeze_epochs)
        model.train()
        batches = length_grouped_batches(lengths, cfg.batch_size, cfg.seed, epoch, cfg.group_by_length, rank, world)
        skip = state.batch_in_epoch   # > 0 when resuming inside this epoch
        if not skip:
            state.loss_sum, state.loss_batches = 0.0, 0
        progress = _Progress(len(batches), skip, f"epoch {epoch + 1}", device, log)
        t_epoch, seen_epoch = time.perf_counter(), 0
        optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(iterate_batches(train, batches[skip:], pad_id, pad_to, token_types, soft_targets), start=skip):
            batch = {k: v.to(device) for k, v in batch.items()}
            sync = (i + 1) % cfg.grad_accum == 0 or i + 1 == len(batches)   # the last micro-batch of a step
            with (model.no_sync() if world > 1 and not sync else nullcontext()), \
                    autocast_for(cfg.precision, device), fast_dropout_mode(fast_dropout):
                loss = compute_loss(model, dict(batch)) / cfg.grad_accum
            (scaler.scale(loss) if scaler else loss).backward()
            if sync:
                _optimizer_step(cfg, model, optimizer, scheduler, scaler)
                state.global_step += 1
            state.batch_in_epoch = i + 1
            state.loss_sum += loss.item() * cfg.grad_accum
            state.loss_batches += 1
            seen += len(batch["labels"])
            seen_epoch += len(batch["labels"])
            rate, lr = seen_epoch / max(time.perf_counter() - t_epoch, 1e-9), optimizer.param_groups[0]["lr"]
            progress.step(i + 1, state.global_step if sync else None, state.loss_sum / state.loss_batches, lr, rate)
            if writer and sync:
                for name, value in (("loss", loss.item() * cfg.grad_accum), ("lr", lr), ("samples_per_s", rate)):
                    writer.add_scalar(f"train/{name}", value, state.global_step)
            if rank == 0 and sync and cfg.checkpoint_every and state.global_step % cfg.checkpoint_every == 0:
                checkpoint()
            if cfg.max_steps and state.global_step >= cfg.max_steps:
                break
        progress.close()
        if cfg.scheduler == "step":
            scheduler.step()

        # ---- end of the epoch: evaluate, keep the best, count patience, checkpoint
        epoch_seconds = time.perf_counter() - t_epoch
        train_metrics = evaluate_split(unwrap(model), train_probe, cfg, device, pad_id, "train-eval")
        valid_metrics = evaluate_split(unwrap(model), valid, cfg, device, pad_id, "valid")
        row = {"epoch": epoch + 1, "step": state.global_step, "train_loss": state.loss_sum / max(state.loss_batches, 1),
               "train_accuracy": train_metrics["accuracy"], "train_macro_f1": train_metrics["macro_f1"],
               "valid_accuracy": valid_metrics["accuracy"], "valid_macro_f1": valid_metrics["macro_f1"],
               "epoch_seconds": round(epoch_seconds, 1), "samples_per_s": round(seen_epoch / max(epoch_seconds, 1e-9), 2)}
        # a max_steps stop inside the epoch: its rest is still due when a rerun raises max_steps
        partial = 0 < state.batch_in_epoch < len(batches)
        if partial:
            row["partial_epoch"] = f"{state.batch_in_epoch}/{len(batches)} batches"
        state.history.append(row)
        log(f"epoch {epoch + 1}{' (stopped by max_steps mid-epoch)' if partial else ''}: loss {row['train_loss']:.4f}  "
            f"valid acc {row['valid_accuracy']:.4f}  macro F1 {row['valid_macro_f1']:.4f}  "
            f"({row['epoch_seconds']:.0f}s, {row['samples_per_s']:.1f} samples/s)")
        if writer:
            for k in ("train_loss", "train_accuracy", "train_macro_f1", "valid_accuracy", "valid_macro_f1"):
                writer.add_scalar(f"epoch/{k}", row[k], epoch + 1)
        if valid_metrics["macro_f1"] > state.best_f1:
            state.best_f1, state.bad_epochs = valid_metrics["macro_f1"], 0
            if rank == 0:
                save_model(model, tokenizer, best_dir)
        elif not partial:   # patience counts whole epochs
            state.bad_epochs += 1
        if not partial:
            state.epoch, state.batch_in_epoch, state.loss_sum, state.loss_batches = epoch + 1, 0, 0.0, 0
        state.stopped_early = bool(cfg.patience and state.bad_epochs >= cfg.patience)
        if rank == 0:
            checkpoint()
            atomic_write_text(out_dir / "history.json", json.dumps(state.history, indent=2))
        if state.stopped_early:
            log(f"early stop: no valid macro F1 gain for {cfg.patience} epoch(s)")
            break
        if cfg.max_steps and state.global_step >= cfg.max_steps:
            break

    if writer:
        writer.close()
    if world > 1:
        dist.barrier()
    seconds = time.perf_counter() - t_start
    best = max(state.history, key=lambda r: r["valid_macro_f1"]) if state.history else {}
    return FitResult(best_metrics=best, history=state.history, best_dir=best_dir, epochs_run=len(state.history),
                     stopped_early=state.stopped_early, train_seconds=seconds,
                     samples_per_second=seen / max(seconds, 1e-9), precision=precision.to_dict())


def _optimizer_step(cfg: TrainConfig, model, optimizer, scheduler, scaler) -> None:
    """Unscale (fp16), clip, step, zero; a linear schedule steps with the optimizer."""
    if scaler:
        scaler.unscale_(optimizer)
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if cfg.scheduler == "linear":
        scheduler.step()


class _Progress:
    """A tqdm bar on a terminal (rank 0); without one (docker logs, nohup) a plain line every 50 steps."""

    def __init__(self, total: int, initial: int, desc: str, device: torch.device, log) -> None:
        self.bar = tqdm(total=total, initial=initial, desc=desc, disable=quiet())
        self.lines = self.bar.disable and dist_info()[0] == 0
        self.total, self.desc, self.device, self.log = total, desc, device, log

    def step(self, batch: int, global_step: int | None, loss: float, lr: float, rate: float) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", sps=f"{rate:.1f}",
                             **({"gpu": gpu_util(self.device)} if self.device.type == "cuda" else {}))
        if self.lines and global_step and global_step % 50 == 0:
            self.log(f"{self.desc} batch {batch}/{self.total} step {global_step}: "
                     f"loss {loss:.4f} lr {lr:.2e} {rate:.1f} samples/s")

    def close(self) -> None:
        self.bar.close()
