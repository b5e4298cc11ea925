"""Errors a user can act on. The CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations


class RetailSimError(Exception):
    """A problem with the user's input or arguments (a file, a column, an option), not a bug."""
