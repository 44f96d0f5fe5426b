"""Process and device set-up for training: seeds, the DDP process group (torchrun / accelerate
launch set the environment), the precision actually used, and progress messages."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from review_classifier.shared.atomic import atomic_write_text
from review_classifier.shared.provenance import machine
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.fit.precision import choose_for_device


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
    choice = choose_for_device(cfg.precision, device)
    log = log or log_rank0
    log(f"precision: {choice.used} (asked: {choice.requested}; {choice.reason})")
    if choice.warning:
        log(f"warning: {choice.warning}")
    here = machine()
    record = {**choice.to_dict(), "cpu": f"{here['cpu']} ({here['cpu_class']})"}
    path = Path(out_dir) / "precision.json"
    earlier = _read_json(path)
    if earlier and (earlier.get("used"), earlier.get("cpu")) != (record["used"], record["cpu"]):
        # a run resumed on another machine (bf16 on AMX, fp32 on AVX2-only): the steps before
        # and after differ in precision, and the log says so
        log(f"this run continues on another machine: its earlier steps used {earlier.get('used')} "
            f"on {earlier.get('cpu', 'an unrecorded CPU')}, this one uses {record['used']} on {record['cpu']}")
    record["machines"] = [*(earlier or {}).get("machines", []), {k: record[k] for k in ("used", "cpu")}]
    if dist_info()[0] == 0:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return dataclasses.replace(cfg, precision=choice.used), choice


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def autocast_for(precision: str, device: torch.device):
    if precision == "auto":
        precision = choose_for_device(precision, device).used
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def log_rank0(message: str) -> None:
    """Progress for people: stderr, flushed (stdout is block-buffered under nohup or docker), rank 0 only."""
    if dist_info()[0] == 0:
        print(message, file=sys.stderr, flush=True)


def quiet() -> bool:
    return not sys.stderr.isatty() or dist_info()[0] != 0


def gpu_util(device: torch.device) -> str:
    if device.type != "cuda":
        return ""
    try:
        return f"{torch.cuda.utilization(device)}%"
    except Exception:  # pynvml missing or unsupported: show memory instead
        return f"{torch.cuda.memory_allocated(device) / 2**30:.1f}GiB"


def progress_bar(total: int, desc: str, log, unit: str = "review"):
    """(bar, step(n)): a tqdm bar on a terminal; without one, a plain line every 30 s for logs."""
    bar = tqdm(total=total, desc=desc, unit=unit, disable=quiet())
    state = {"t": time.perf_counter(), "done": 0}

    def step(n: int) -> None:
        bar.update(n)
        state["done"] += n
        if bar.disable and time.perf_counter() - state["t"] >= 30:   # a plain line for logs
            state["t"] = time.perf_counter()
            log(f"{desc}: {state['done']}/{total} {unit}s")
    return bar, step
