"""Errors a user can act on. The CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations

from pathlib import Path


class RetailSimError(Exception):
    """A problem with the user's input or arguments (a file, a column, an option), not a bug."""


def check_output_dir(out: Path, overwrite: bool, flag: str | None = None) -> None:
    """Refuse an output path that is a file, or a non-empty directory unless ``overwrite``; ``flag`` names
    the option the path came from (``--out``) in the message."""
    named = f"{flag}: {out}" if flag else f"{out}:"
    if out.exists() and not out.is_dir():
        raise RetailSimError(f"{named} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise RetailSimError(f"{named} output directory exists and is not empty (pass --overwrite, or "
                             "overwrite=True in Python)")  # fmt: skip
