"""The environment keyword arguments of the training runs, checked by building the env before a run
directory is written (``retailsim agents train`` and ``train-multi`` report them as ``--env-kwargs``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from world_model.errors import RetailSimError

from retailsim_env.env import open_sim

ENV_KWARGS = (*inspect.signature(open_sim).parameters, "start_week")
"""The keys both trainers take: ``open_sim``'s and the episode start."""

T = TypeVar("T")


class EnvKwargsError(RetailSimError):
    """Bad ``env_kwargs``: an unknown key, or a value the environment rejects (``detail`` says which)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"env_kwargs: {detail}")
        self.detail = detail


def build_env(build: Callable[[], T], env_kwargs: dict[str, Any]) -> T:
    """``build()``, after checking ``env_kwargs``' keys; the env's errors become ``EnvKwargsError``."""
    unknown = sorted(set(env_kwargs) - set(ENV_KWARGS))
    if unknown:
        raise EnvKwargsError(f"unknown {', '.join(map(repr, unknown))} (known: {', '.join(ENV_KWARGS)})")
    start = env_kwargs.get("start_week")  # only used at the first reset, after the run directory exists
    if start is not None and (isinstance(start, bool) or not isinstance(start, int) or start < 1):
        raise EnvKwargsError(f"start_week must be a data week index >= 1 (or null: drawn), got {start!r}")
    try:
        return build()
    except (TypeError, ValueError, RetailSimError) as error:
        raise EnvKwargsError(str(error)) from error
