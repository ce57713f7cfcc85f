"""One exception type per kind of user mistake.

Every error a user can cause says what is wrong, where (file, line, key) and how to fix it, on
one line, and exits with code 2. The CLI prints it without a traceback (click does that for
ClickException). A failed *check* (verify mismatch) is not an error: it exits 1 on its own.
"""

from __future__ import annotations

import click

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


class KitError(click.ClickException):
    """Bad input or usage: exit code 2, one line, with the place and the fix."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        self.reason = message
        self.where = where
        self.fix = fix
        super().__init__(self.line(message, where, fix))

    @staticmethod
    def line(message: str, where: str | None, fix: str | None) -> str:
        """`WHERE: MESSAGE Fix: FIX` on one line (any newline in a part becomes a space)."""
        text = f"{where}: {message}" if where else message
        if fix:
            text = f"{text} Fix: {fix}"
        return " ".join(text.split())


class RecipeError(KitError):
    """A recipe file that does not parse or does not validate."""


class DataError(KitError):
    """A dataset file or row that is malformed, fails the schema, or is not the pinned one."""


class ModelSourceError(KitError):
    """A base model or tokenizer that cannot be loaded safely (unpinned, pickle, corrupt)."""


class RunDirError(KitError):
    """A run directory that is missing, incomplete, or whose files do not match its manifest."""


class ReferenceFileError(KitError):
    """A reference file of the wrong schema version or shape."""


class ResourceError(KitError):
    """Not enough GPU memory or disk for what was asked."""


class TrainingError(KitError):
    """Training that cannot go on: the loss or a gradient became NaN or infinite."""
