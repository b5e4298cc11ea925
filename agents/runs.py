"""Reading a training run's directory back (``retailsim agents train`` and ``train-multi`` write them).

A run directory copied in part, edited by hand or written by an older version is the user's to fix, so
every way it can be unreadable is one ``RetailSimError`` naming the file, not a traceback from deep in
json, pickle, Stable-Baselines3 or torch."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from world_model.errors import RetailSimError

from agents.envargs import EnvKwargsError

T = TypeVar("T")

CONFIG_FILE = "config.json"


def check_run_files(run_dir: Path, files: Iterable[str]) -> None:
    """Refuse ``run_dir`` when one of the run's ``files`` is missing (naming them all)."""
    missing = [name for name in files if not (run_dir / name).is_file()]
    if missing:
        raise RetailSimError(f"{run_dir}: not a complete training run (missing {', '.join(missing)})")


def read_run_config(run_dir: Path, build: Callable[[dict[str, Any]], T]) -> T:
    """``build(config)`` of the run's ``config.json``; unreadable JSON, a value other than an object, or
    fields ``build`` rejects (unknown or missing keys) are one error naming the file."""
    path = run_dir / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RetailSimError(f"{path}: not a readable run config ({error})") from error
    if not isinstance(config, dict):
        raise RetailSimError(f"{path}: a run config is a JSON object, got {type(config).__name__}")
    try:
        return build(config)
    except (KeyError, TypeError, ValueError) as error:
        raise RetailSimError(f"{path}: not this version's run config ({error!r})") from error


@contextmanager
def config_errors(run_dir: Path) -> Iterator[None]:
    """Env keyword arguments of the run's config.json that the environment refuses (``EnvKwargsError``:
    a hand edit, or a scenario moved or rebuilt since) as one error naming the file."""
    try:
        yield
    except EnvKwargsError as error:
        raise RetailSimError(f"{run_dir / CONFIG_FILE}: {error}") from error


def load_run_file(path: Path, load: Callable[[Path], T]) -> T:
    """``load(path)`` for a saved model or statistics file; a corrupt or foreign file (any error while
    loading: zip, pickle and torch each raise their own) is one error naming it."""
    try:
        return load(path)
    except Exception as error:  # noqa: BLE001 - the loaders' errors have no common base
        raise RetailSimError(f"{path}: cannot be loaded ({type(error).__name__}: {error})") from error
