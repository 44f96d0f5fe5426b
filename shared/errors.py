"""The one exception type for mistakes a user can make (bad data, bad bundle, bad flag)."""


class ClassifierError(Exception):
    """A user-caused error: the CLIs print its message on one line and exit non-zero."""

    exit_code = 2


class BundleError(ClassifierError):
    """A model bundle is missing, tampered with, truncated or incompatible."""

    exit_code = 3


def first_line(e: BaseException) -> str:
    """An exception as one line for a user-facing message: its first line, else its type's name
    (library errors often carry a traceback-sized text)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
