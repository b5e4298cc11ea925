"""Checkpoint files of a training run: what they hold, how they are written, how consumers read them.

A run directory holds ``epoch-{e:03d}.pt`` for every finished epoch (0-based), ``last.pt`` (the latest
epoch: what ``resume`` reads), ``best.pt`` (the epoch with the best monitored metric) and
``train_state.json`` (epoch, step, best, history: readable without torch). Every file is written to
``NAME.tmp``, fsynced and renamed over ``NAME``, so a job killed mid-write leaves the previous file intact.

A checkpoint is a dict with the keys of ``CHECKPOINT_KEYS`` (and ``model_config`` when the task exposes
one). It holds only tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``:
a consumer does not execute pickled code from a checkpoint it did not write.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from world_model.errors import RetailSimError
from world_model.files import atomic_write, write_json_atomic

FORMAT = "retailsim.training/1"
LAST = "last.pt"
BEST = "best.pt"
TRAIN_STATE = "train_state.json"
CHECKPOINT_KEYS = (
    "format", "model", "optimizer", "scheduler", "scaler", "epoch", "step", "best_value", "best_epoch",
    "epochs_without_improvement", "history", "rng", "config",
)  # fmt: skip


def epoch_name(epoch: int) -> str:
    return f"epoch-{epoch:03d}.pt"


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    atomic_write(path, lambda handle: torch.save(checkpoint, handle), durable=True)


def copy_checkpoint(source: Path, target: Path) -> None:
    """``last.pt`` and ``best.pt`` are copies of an epoch file: one serialisation per epoch, not three."""
    with open(source, "rb") as src:
        atomic_write(target, lambda handle: shutil.copyfileobj(src, handle, 1 << 24), durable=True)


def write_json(path: Path, obj: Any) -> None:
    write_json_atomic(path, obj, durable=True)


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by the trainer, tensors mapped to ``map_location``.

    ``checkpoint["model"]`` is the unwrapped model's state_dict and ``checkpoint.get("model_config")`` what
    the task's ``model_config()`` returned, so a model can be rebuilt without the task."""
    path = Path(path)
    if not path.is_file():
        raise RetailSimError(f"{path}: missing checkpoint")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises whatever the bytes trip (KeyError, IndexError on text)
        raise RetailSimError(f"{path}: not a training checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise RetailSimError(f"{path}: not a training checkpoint (no '{FORMAT}' format tag)")
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise RetailSimError(f"{path}: not a training checkpoint (missing {', '.join(missing)})")
    return checkpoint


def capture_rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch CPU and (when present) CUDA generator states, as plain values."""
    name, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), position, has_gauss, cached_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
