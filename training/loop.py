"""The hand-written training loop: length-grouped batches, weighted loss, mixed precision,
gradient accumulation and clipping, per-epoch evaluation, best checkpoint, resume, early stop.

Runs as one process or under `torchrun` / `accelerate launch` (DDP, gloo on CPU, nccl on GPU)
without code changes: the process group is read from the environment.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from review_classifier.shared.atomic import atomic_path, recover_interrupted
from review_classifier.training.config import TrainConfig
from review_classifier.training.fast_dropout import fast_dropout_mode
from review_classifier.training.metrics import accuracy_f1
from review_classifier.training.model import set_lower_frozen

LossFn = Callable[[torch.nn.Module, dict], torch.Tensor]


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


@dataclass
class _State:
    """Everything needed to resume, saved with the weights in `last/`."""
    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    best_f1: float = -1.0
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False   # a rerun after early stopping trains no further
    loss_sum: float = 0.0         # the epoch's training loss so far, so a resumed epoch
    loss_batches: int = 0         # reports the mean over all its batches


# ---------------------------------------------------------------- process and device set-up

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun/accelerate environment; (0, 1, 0) alone."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def setup_device() -> torch.device:
    rank, world, local = dist_info()
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def resolve_precision(cfg: TrainConfig, device: torch.device, out_dir: Path, log=None):
    """(cfg with a concrete precision, PrecisionChoice): logs the choice and why, and saves it
    as out_dir/precision.json; a bf16 that this CPU would emulate is logged with its cost."""
    import dataclasses

    from review_classifier.shared.atomic import atomic_write_text
    from review_classifier.training.precision import choose_for_device

    choice = choose_for_device(cfg.precision, device)
    log = log or log_rank0
    log(f"precision: {choice.used} (asked: {choice.requested}; {choice.reason})")
    if choice.warning:
        log(f"warning: {choice.warning}")
    if dist_info()[0] == 0:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out_dir) / "precision.json", json.dumps(choice.to_dict(), indent=2) + "\n")
    return dataclasses.replace(cfg, precision=choice.used), choice


def autocast_for(precision: str, device: torch.device):
    if precision == "auto":
        from review_classifier.training.precision import choose_for_device

        precision = choose_for_device(precision, device).used
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# ---------------------------------------------------------------- batches

def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, epoch: int,
                           group: bool, rank: int = 0, world: int = 1) -> list[list[int]]:
    """Shuffled batches; with `group`, each batch holds texts of similar length.

    Sorting happens inside shuffled windows of 64 batches, so batch order stays random and
    the padding is small. Every rank gets the same number of batches.
    """
    rng = np.random.default_rng(seed + epoch)
    order = rng.permutation(len(lengths))
    if group:
        window = batch_size * 64
        chunks = [order[i:i + window] for i in range(0, len(order), window)]
        order = np.concatenate([c[np.argsort([-lengths[j] for j in c], kind="stable")] for c in chunks])
    batches = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    if group:
        rng.shuffle(batches)
    per_rank = len(batches) // world if world > 1 else len(batches)
    return batches[rank::world][:per_rank]


def collate(features: list[dict], pad_id: int, pad_to: int | None, accepts_token_types: bool) -> dict:
    """Pad a batch to its longest text (a multiple of 8) or to `pad_to`."""
    longest = max(len(f["input_ids"]) for f in features)
    width = pad_to or int(math.ceil(longest / 8) * 8)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"], dtype=torch.long)
        mask[i, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask,
             "labels": torch.tensor([f["labels"] for f in features], dtype=torch.long)}
    if accepts_token_types:
        batch["token_type_ids"] = torch.zeros_like(ids)
    return batch


def iterate_batches(dataset, batches: list[list[int]], pad_id: int, pad_to: int | None,
                    accepts_token_types: bool) -> Iterator[dict]:
    for idx in batches:
        rows = dataset[idx]
        feats = [{"input_ids": a, "labels": b} for a, b in zip(rows["input_ids"], rows["labels"])]
        yield collate(feats, pad_id, pad_to, accepts_token_types)


def accepts_token_type_ids(model) -> bool:
    import inspect

    return "token_type_ids" in inspect.signature(model.forward).parameters


# ---------------------------------------------------------------- loss

def class_weighted_loss(labels: list[int], num_labels: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Binary: BCE on the logit margin with pos_weight = negatives / positives (as the
    original project did); multi-class: cross-entropy with inverse-frequency class weights."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_labels).astype(np.float64)
    if num_labels == 2:
        pos_weight = torch.tensor(counts[0] / max(counts[1], 1.0), dtype=torch.float32)

        def binary(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            margin = (logits[:, 1] - logits[:, 0]).float()
            return torch.nn.functional.binary_cross_entropy_with_logits(
                margin, y.float(), pos_weight=pos_weight.to(margin.device))
        return binary
    weights = torch.tensor(counts.sum() / (num_labels * np.maximum(counts, 1.0)), dtype=torch.float32)

    def multiclass(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits.float(), y, weight=weights.to(logits.device))
    return multiclass


# ---------------------------------------------------------------- optimisation

def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """All parameters (frozen ones get no gradient until unfrozen); no decay on bias/LayerNorm."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "nadam":
        return torch.optim.NAdam(groups, lr=cfg.lr, decoupled_weight_decay=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def make_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """`linear`: warm-up then linear decay, stepped per optimizer step.
    `step`: StepLR (as the original), stepped once per epoch."""
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    from transformers import get_linear_schedule_with_warmup

    total = max(1, steps_per_epoch * cfg.epochs)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    return get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def predict(model, dataset, cfg: TrainConfig, device: torch.device, pad_id: int,
            desc: str = "eval") -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels for a tokenised split, in dataset order (length-sorted internally)."""
    model.eval()
    lengths = dataset["length"] if "length" in dataset.column_names else [len(x) for x in dataset["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    batches = [order[i:i + cfg.eval_batch_size].tolist() for i in range(0, len(order), cfg.eval_batch_size)]
    tt = accepts_token_type_ids(model)
    logits = np.zeros((len(order), model.config.num_labels), dtype=np.float32)
    bar = tqdm(batches, desc=desc, leave=False, disable=_quiet())
    for idx, batch in zip(bar, iterate_batches(dataset, batches, pad_id, None, tt)):
        labels = batch.pop("labels")
        del labels
        with autocast_for(cfg.precision, device):
            out = model(**{k: v.to(device) for k, v in batch.items()}).logits
        logits[idx] = out.float().cpu().numpy()
    return logits, np.asarray(dataset["labels"])


def evaluate_split(model, dataset, cfg: TrainConfig, device, pad_id: int, desc: str = "eval") -> dict:
    logits, labels = predict(model, dataset, cfg, device, pad_id, desc)
    return accuracy_f1(logits.argmax(-1), labels, cfg.num_labels)


# ---------------------------------------------------------------- checkpoints

def save_model(model, tokenizer, folder: Path) -> None:
    """save_pretrained (safetensors) into `folder`, atomically."""
    with atomic_path(folder) as tmp:
        _unwrap(model).save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)


def save_checkpoint(folder: Path, model, optimizer, scheduler, scaler, state: _State) -> None:
    """Weights, optimizer, scheduler, RNG and loop state: enough to resume after a kill."""
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file({k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()},
                  str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler else None,
                    "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                            "python": random.getstate()}}, tmp / "training_state.pt")
        (tmp / "state.json").write_text(json.dumps(state.__dict__, indent=2))


def load_checkpoint(folder: Path, model, optimizer, scheduler, scaler) -> _State:
    from review_classifier.shared.errors import ClassifierError

    try:   # strict: a checkpoint of another architecture or head is refused, not half-loaded
        _unwrap(model).load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:3] if line.strip())   # the keys
        raise ClassifierError(f"{folder} does not fit this model ({detail[:300]}); "
                              "use a new output_dir, or --restart to discard it") from None
    blob = torch.load(folder / "training_state.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    if scaler and blob["scaler"]:
        scaler.load_state_dict(blob["scaler"])
    torch.set_rng_state(blob["rng"]["torch"])
    np.random.set_state(blob["rng"]["numpy"])
    random.setstate(blob["rng"]["python"])
    return _State(**json.loads((folder / "state.json").read_text()))


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def _quiet() -> bool:
    import sys

    return not sys.stderr.isatty() or dist_info()[0] != 0


def _gpu_util(device: torch.device) -> str:
    if device.type != "cuda":
        return ""
    try:
        return f"{torch.cuda.utilization(device)}%"
    except Exception:  # pynvml missing or unsupported: show memory instead
        return f"{torch.cuda.memory_allocated(device) / 2**30:.1f}GiB"


# ---------------------------------------------------------------- the loop

def log_rank0(message: str) -> None:
    """Progress for people: stderr, flushed (stdout is block-buffered under nohup or docker), rank 0 only."""
    if dist_info()[0] == 0:
        print(message, file=sys.stderr, flush=True)


def fit(cfg: TrainConfig, model, tokenized, out_dir: Path, *, tokenizer=None,
        compute_loss: LossFn | None = None, log=log_rank0) -> FitResult:
    """Train on tokenized["train"], pick the best epoch by tokenized["valid"] macro F1.

    Writes out_dir/best (model + tokenizer), out_dir/last (resumable checkpoint),
    out_dir/history.json and TensorBoard scalars under out_dir/tb. Resumes from
    out_dir/last when it exists.
    """
    out_dir = Path(out_dir)
    rank, world, _ = dist_info()
    device = setup_device()
    cfg, precision = resolve_precision(cfg, device, out_dir, log)
    seed_everything(cfg.seed)
    model.to(device)
    pad_id = tokenizer.pad_token_id if tokenizer is not None and tokenizer.pad_token_id is not None else 0
    tt = accepts_token_type_ids(model)
    train, valid = tokenized["train"], tokenized["valid"]
    lengths = train["length"] if "length" in train.column_names else [len(x) for x in train["input_ids"]]
    loss_of = class_weighted_loss(train["labels"], cfg.num_labels)
    if compute_loss is None:
        def compute_loss(m, batch):
            labels = batch.pop("labels")
            return loss_of(m(**batch).logits, labels)

    batches_per_epoch = len(length_grouped_batches(lengths, cfg.batch_size, cfg.seed, 0, False, rank, world))
    steps_per_epoch = max(1, batches_per_epoch // cfg.grad_accum)
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None

    state = _State()
    last_dir, best_dir = out_dir / "last", out_dir / "best"
    if rank == 0:   # a run killed while writing a checkpoint: its previous version, not a fresh start
        for folder in (last_dir, best_dir):
            if recover_interrupted(folder):
                log(f"{folder}: put back the previous version (a run was stopped while replacing it)")
    if world > 1:
        dist.barrier()
    if (last_dir / "state.json").is_file():
        state = load_checkpoint(last_dir, model, optimizer, scheduler, scaler)
        log(f"resuming from {last_dir}: epoch {state.epoch + 1}, batch {state.batch_in_epoch}, step {state.global_step}")
    if world > 1:
        # frozen layers get no gradient in the first freeze_epochs: DDP must look for them
        model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=cfg.freeze_epochs > 0)
    writer = SummaryWriter(str(out_dir / "tb")) if cfg.tensorboard and rank == 0 else None

    # Train accuracy/F1 each epoch on a fixed random sample (a full pass would double the cost).
    probe_idx = np.random.default_rng(cfg.seed).permutation(len(train))[:2000]
    train_probe = train.select(sorted(probe_idx.tolist()))
    t_start, seen = time.perf_counter(), 0
    done = state.stopped_early or bool(cfg.max_steps and state.global_step >= cfg.max_steps)
    if done:
        why = "stopped early" if state.stopped_early else f"reached max_steps={cfg.max_steps}"
        log(f"this run already {why} at step {state.global_step}; nothing left to train")
    pad_to = cfg.max_length if cfg.pad_to_max else None
    fast_dropout = cfg.fast_dropout and device.type == "cpu"
    for epoch in range(state.epoch, state.epoch if done else cfg.epochs):
        if cfg.freeze_epochs:
            set_lower_frozen(_unwrap(model), cfg.freeze_layers, frozen=epoch < cfg.freeze_epochs)
        model.train()
        batches = length_grouped_batches(lengths, cfg.batch_size, cfg.seed, epoch, cfg.group_by_length, rank, world)
        skip = state.batch_in_epoch
        bar = tqdm(total=len(batches), initial=skip, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=_quiet())
        loss_sum, loss_n = (state.loss_sum, state.loss_batches) if skip else (0.0, 0)
        t_epoch, seen_epoch = time.perf_counter(), 0
        optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(iterate_batches(train, batches[skip:], pad_id, pad_to, tt), start=skip):
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch["labels"]
            sync = (i + 1) % cfg.grad_accum == 0 or i + 1 == len(batches)
            ctx = model.no_sync() if world > 1 and not sync else nullcontext()
            with ctx, autocast_for(cfg.precision, device), fast_dropout_mode(fast_dropout):
                loss = compute_loss(model, dict(batch)) / cfg.grad_accum
            (scaler.scale(loss) if scaler else loss).backward()
            if sync:
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
                state.global_step += 1
            loss_sum += loss.item() * cfg.grad_accum
            loss_n += 1
            state.loss_sum, state.loss_batches = loss_sum, loss_n
            seen += len(labels)
            seen_epoch += len(labels)
            state.batch_in_epoch = i + 1
            rate = seen_epoch / max(time.perf_counter() - t_epoch, 1e-9)
            lr = optimizer.param_groups[0]["lr"]
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / loss_n:.4f}", lr=f"{lr:.2e}", sps=f"{rate:.1f}",
                            **({"gpu": _gpu_util(device)} if device.type == "cuda" else {}))
            if bar.disable and rank == 0 and sync and state.global_step % 50 == 0:
                # no TTY (docker logs, nohup): a plain progress line instead of the bar
                log(f"epoch {epoch + 1} batch {i + 1}/{len(batches)} step {state.global_step}: "
                    f"loss {loss_sum / loss_n:.4f} lr {lr:.2e} {rate:.1f} samples/s")
            if writer and sync:
                writer.add_scalar("train/loss", loss.item() * cfg.grad_accum, state.global_step)
                writer.add_scalar("train/lr", lr, state.global_step)
                writer.add_scalar("train/samples_per_s", rate, state.global_step)
            if rank == 0 and sync and cfg.checkpoint_every and state.global_step % cfg.checkpoint_every == 0:
                save_checkpoint(last_dir, model, optimizer, scheduler, scaler, state)
            if cfg.max_steps and state.global_step >= cfg.max_steps:
                break
        bar.close()
        if cfg.scheduler == "step":
            scheduler.step()
        epoch_seconds = time.perf_counter() - t_epoch
        train_metrics = evaluate_split(_unwrap(model), train_probe, cfg, device, pad_id, "train-eval")
        valid_metrics = evaluate_split(_unwrap(model), valid, cfg, device, pad_id, "valid")
        row = {"epoch": epoch + 1, "step": state.global_step, "train_loss": loss_sum / max(loss_n, 1),
               "train_accuracy": train_metrics.get("accuracy"), "train_macro_f1": train_metrics.get("macro_f1"),
               "valid_accuracy": valid_metrics["accuracy"], "valid_macro_f1": valid_metrics["macro_f1"],
               "epoch_seconds": round(epoch_seconds, 1), "samples_per_s": round(seen_epoch / max(epoch_seconds, 1e-9), 2)}
        # a max_steps stop inside the epoch: its rest is still due when a rerun raises max_steps
        partial = 0 < state.batch_in_epoch < len(batches)
        if partial:
            row["partial_epoch"] = f"{state.batch_in_epoch}/{len(batches)} batches"
        state.history.append(row)
        log(f"epoch {epoch + 1}{' (stopped by max_steps mid-epoch)' if partial else ''}: loss {row['train_loss']:.4f}  valid acc {row['valid_accuracy']:.4f}  "
            f"macro F1 {row['valid_macro_f1']:.4f}  ({row['epoch_seconds']:.0f}s, {row['samples_per_s']:.1f} samples/s)")
        if writer:
            for k in ("train_loss", "train_accuracy", "train_macro_f1", "valid_accuracy", "valid_macro_f1"):
                if row[k] is not None:
                    writer.add_scalar(f"epoch/{k}", row[k], epoch + 1)
        improved = valid_metrics["macro_f1"] > state.best_f1
        if improved:
            state.best_f1, state.bad_epochs = valid_metrics["macro_f1"], 0
            if rank == 0:
                save_model(model, tokenizer, best_dir)
        elif not partial:   # patience counts whole epochs
            state.bad_epochs += 1
        if not partial:
            state.epoch, state.batch_in_epoch, state.loss_sum, state.loss_batches = epoch + 1, 0, 0.0, 0
        if cfg.patience and state.bad_epochs >= cfg.patience:
            state.stopped_early = True
        if rank == 0:
            save_checkpoint(last_dir, model, optimizer, scheduler, scaler, state)
            from review_classifier.shared.atomic import atomic_write_text
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
                     stopped_early=state.stopped_early, train_seconds=seconds, samples_per_second=seen / max(seconds, 1e-9),
                     precision=precision.to_dict())
