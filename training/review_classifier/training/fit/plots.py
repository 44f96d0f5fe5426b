"""Plots people would rather see than read: training curves and the confusion matrix."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from review_classifier.shared.atomic import atomic_path


def _pyplot():
    import matplotlib  # lazy: matplotlib and tensorboard only when a run draws its figures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    return plt


def _scalar_events(tb_dir: Path, tag: str) -> list:
    """Every event of one TensorBoard scalar under tb_dir (all runs written there)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # lazy: as above

    if not Path(tb_dir).is_dir():
        return []
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc.Scalars(tag) if tag in acc.Tags().get("scalars", []) else []


def step_scalars(tb_dir: Path, tag: str = "train/loss") -> list[tuple[int, float]]:
    """(step, value) pairs of one TensorBoard scalar, across resumed runs (last write wins)."""
    return sorted({e.step: e.value for e in _scalar_events(tb_dir, tag)}.items())


def plot_curves(history: list[dict], path: Path, steps: list[tuple[int, float]] = ()) -> Path:
    """Training loss per optimizer step (from TensorBoard, smoothed) or per epoch, and valid
    accuracy / macro F1 per epoch."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    if steps:
        xs, ys = zip(*steps)
        k = max(1, len(ys) // 50)
        smooth = [sum(ys[max(0, i - k):i + 1]) / len(ys[max(0, i - k):i + 1]) for i in range(len(ys))]
        ax1.plot(xs, ys, alpha=0.3, label="train loss (step)")
        ax1.plot(xs, smooth, label=f"train loss (mean of {k + 1})")
        ax1.set_xlabel("optimizer step")
    else:
        ax1.plot(epochs, [r["train_loss"] for r in history], "o-", label="train loss")
        ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss"), ax1.legend(), ax1.grid(alpha=0.3)
    for key, style in (("train_accuracy", "o--"), ("valid_accuracy", "o-"), ("valid_macro_f1", "s-")):
        vals = [r.get(key) for r in history]
        if any(v is not None for v in vals):
            ax2.plot(epochs, vals, style, label=key.replace("_", " "))
    ax2.set_xlabel("epoch"), ax2.set_ylabel("score"), ax2.legend(), ax2.grid(alpha=0.3)
    ax2.set_xticks(epochs)   # whole epochs, not 1.25, 1.5, ...
    fig.suptitle("training curves")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_confusion(matrix: list[list[int]], labels: list[str], path: Path, title: str = "confusion matrix") -> Path:
    plt = _pyplot()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 2))
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=30), ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title)
    top = max(max(row) for row in matrix) or 1
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i][j]), ha="center", va="center",
                    color="white" if matrix[i][j] > top / 2 else "black")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def timed_steps(tb_dir: Path, tag: str = "train/loss", max_gap_s: float = 120.0) -> dict:
    """Training wall time from the per-step TensorBoard events, across stops and resumes.

    Sums the wall-clock gaps between consecutive optimizer steps, leaving out gaps longer than
    `max_gap_s` (a stop, a restart, an evaluation); steps redone after a resume count once
    (the last write wins). Returns seconds, steps timed and seconds per step.
    """
    events = _scalar_events(tb_dir, tag)
    wall = dict(sorted((e.step, e.wall_time) for e in sorted(events, key=lambda e: e.wall_time)))
    gaps = [wall[s] - wall[s - 1] for s in wall if s - 1 in wall]
    kept = [g for g in gaps if 0 < g <= max_gap_s]
    seconds = float(sum(kept))
    return {"seconds": round(seconds, 1), "steps_timed": len(kept),
            "seconds_per_step": round(seconds / len(kept), 3) if kept else None}


if __name__ == "__main__":  # redraw a run folder's curves: python -m review_classifier.training.fit.plots RUN_DIR
    run = Path(sys.argv[1])
    print(plot_curves(json.loads((run / "history.json").read_text()), run / "curves.png", step_scalars(run / "tb")))
