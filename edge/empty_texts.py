"""The empty-text rule, one for both engines (edge.classify and edge.ray_engine).

A text that is empty or whitespace only (shared.text.is_blank) is never scored. With --empty
mark (the default) it keeps its place with an empty record and is counted for one warning at
the end; with --empty error the first one stops the run, naming its place, or, when bad records
are skipped (--on-error skip), it becomes a rejected record with the reason "empty text"."""
from __future__ import annotations

from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.text import is_blank

EMPTY_POLICIES = ("mark", "error")
REASON = "empty text"


def check_policy(empty: str) -> None:
    if empty not in EMPTY_POLICIES:
        raise ClassifierError(f"--empty must be one of {EMPTY_POLICIES}, got {empty!r}")


def record_error(text: str, error: str | None, where: str, empty: str, skipping: bool) -> str | None:
    """A record's error once the rule is applied: its own, REASON for an empty text under
    --empty error when bad records are skipped; raises for one when they are not."""
    if error is None and empty == "error" and is_blank(text):
        if not skipping:
            raise ClassifierError(f"{where}: empty text; remove it or use --empty mark")
        return REASON
    return error


def warning(count: int, first_at: list[str]) -> str:
    """The closing line for the empty texts marked with an empty record."""
    return (f"warning: {count} empty text(s) got an empty label (first at {'; '.join(first_at)}); "
            "--empty error refuses them")
