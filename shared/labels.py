"""Label mapping: raw label values in data files -> class names -> class ids."""
from __future__ import annotations

from dataclasses import dataclass, field

from review_classifier.shared.errors import ClassifierError

DEFAULT_LABELS = ("negative", "positive")
# Common spellings of the IMDB labels in public copies of the data set.
DEFAULT_ALIASES = {"0": "negative", "1": "positive", "neg": "negative", "pos": "positive"}


def default_aliases_for(labels) -> dict[str, str]:
    """The IMDB spellings (0/1, neg/pos) that fit these labels: all of them for IMDB's labels,
    none for red/green/blue. User-given aliases are taken as they are, and checked."""
    return {a: n for a, n in DEFAULT_ALIASES.items() if n in labels}


@dataclass(frozen=True)
class LabelMap:
    """Class names in id order, plus aliases for raw values that spell a name differently."""

    names: tuple[str, ...] = DEFAULT_LABELS
    aliases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))

    def __post_init__(self) -> None:
        if len(self.names) < 2:
            raise ClassifierError(f"need at least two labels, got {list(self.names)}")
        if len(set(self.names)) != len(self.names):
            raise ClassifierError(f"duplicate label names in {list(self.names)}")
        bad = {a: n for a, n in self.aliases.items() if n not in self.names}
        if bad:
            raise ClassifierError(f"label aliases point to unknown labels: {bad}")

    @property
    def num_labels(self) -> int:
        return len(self.names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def to_id(self, raw: object, where: str = "") -> int:
        """Map a raw label value (name, alias or id as text) to its class id."""
        key = str(raw).strip()
        name = key if key in self.names else self.aliases.get(key, self.aliases.get(key.lower()))
        if name is None and key.lower() in self.names:
            name = key.lower()
        if name is None:
            at = f" at {where}" if where else ""
            raise ClassifierError(
                f"unknown label {key!r}{at}; expected one of {list(self.names)}"
                + (f" or {sorted(self.aliases)}" if self.aliases else "")
            )
        return self.names.index(name)
