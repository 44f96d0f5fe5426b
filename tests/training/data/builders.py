"""Small data files and folders for the tests of training/data/: CSVs and an aclImdb tree."""
from __future__ import annotations

import csv
from pathlib import Path


def write_csv(path: Path, rows: list[list[str]], header=("review", "sentiment")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def balanced_rows(n: int, labels=("negative", "positive"), tag: str = "r") -> list[list[str]]:
    return [[f"review {tag}{i} about film {i * 7 % 13}", labels[i % len(labels)]] for i in range(n)]


def make_acl_tree(root: Path) -> Path:
    """aclImdb layout: train/test x pos/neg, plus unsup/ and extra files that must be ignored."""
    texts = {("train", "pos"): ["Loved it.", "Great fun.", "Superb."], ("train", "neg"): ["Awful.", "Dull."],
             ("test", "pos"): ["Brilliant."], ("test", "neg"): ["Worst ever.", "Boring."]}
    for (part, label), items in texts.items():
        d = root / part / label
        d.mkdir(parents=True)
        for review_id, t in zip([2, 10, 9], items):  # string order differs from numeric order
            (d / f"{review_id}_7.txt").write_text(t, encoding="utf-8")
    (root / "train" / "unsup").mkdir()
    (root / "train" / "unsup" / "0_0.txt").write_text("no label", encoding="utf-8")
    (root / "train" / "urls_pos.txt").write_text("http://x", encoding="utf-8")
    (root / "README").write_text("readme", encoding="utf-8")
    return root

