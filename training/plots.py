"""Plots people would rather see than read: training curves and the confusion matrix."""
from __future__ import annotations

from pathlib import Path

from shared.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], path: Path) -> Path:
    """Loss and valid accuracy / macro F1 per epoch."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["train_loss"] for r in history], "o-", label="train loss")
    ax1.set_xlabel("epoch"), ax1.set_ylabel("loss"), ax1.legend(), ax1.grid(alpha=0.3)
    for key, style in (("train_accuracy", "o--"), ("valid_accuracy", "o-"), ("valid_macro_f1", "s-")):
        vals = [r.get(key) for r in history]
        if any(v is not None for v in vals):
            ax2.plot(epochs, vals, style, label=key.replace("_", " "))
    ax2.set_xlabel("epoch"), ax2.set_ylabel("score"), ax2.legend(), ax2.grid(alpha=0.3)
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
