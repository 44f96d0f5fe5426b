"""train-classify audit: planted label errors are found, out-of-sample means out of sample,
duplicates and markup are listed, bad input is one line."""
from __future__ import annotations

import csv
import random
from pathlib import Path

from tests.conftest import FILLER

TOPICS = {"sport": ["goal", "match", "league", "coach", "striker", "season"],
          "money": ["bank", "rates", "shares", "bond", "inflation", "profit"],
          "weather": ["rain", "storm", "sunny", "forecast", "wind", "snow"]}


def cue_text(cues: list[str], rng: random.Random) -> str:
    words = rng.choices(FILLER, k=rng.randint(6, 20))
    for _ in range(rng.randint(2, 4)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(cues))
    return " ".join(words) + "."


def planted_csv(path: Path, names: list[str], cues: list[list[str]], n: int, flips: int, seed: int = 0,
                header=("review", "sentiment"), extra: list[list[str]] = ()) -> tuple[Path, dict[int, str]]:
    """n learnable rows, `flips` of them given a wrong label; returns the CSV and {row: true label}."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        y = i % len(names)
        rows.append([cue_text(cues[y], rng), names[y]])
    flipped = {}
    for i in rng.sample(range(n), flips):
        flipped[i + 1] = rows[i][1]
        rows[i][1] = rng.choice([m for m in names if m != rows[i][1]])
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows + list(extra))
    return path, flipped


def issues_of(out: Path) -> list[dict]:
    with open(out / "label_issues.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))
