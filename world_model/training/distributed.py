"""Process layout of a training run: single process, or one process per device under ``torchrun``.

``torchrun --nproc_per_node N`` sets RANK, WORLD_SIZE and LOCAL_RANK; with WORLD_SIZE > 1 a process group is
initialised (NCCL on CUDA, gloo on CPU) and the trainer wraps the model in DistributedDataParallel. Without
those variables (or with WORLD_SIZE=1) everything runs in this process and the collectives below are no-ops,
so the trainer has one code path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from world_model.devices import resolve_device
from world_model.errors import RetailSimError

# Rank 0 validates and writes checkpoints while the other ranks wait in a collective; the defaults (10 min
# for NCCL) would kill a job whose validation pass is long.
PROCESS_GROUP_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job. ``is_main`` (rank 0) validates, logs and writes checkpoints."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (others pass anything, e.g. None)."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, indexed by rank."""
        if self.world_size == 1:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered


_active: DistributedContext | None = None


def _context_from_environment(device: str) -> DistributedContext:
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    resolved = resolve_device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", local_rank)  # one GPU per process, as torchrun lays them out
    elif resolved.type == "cuda" and world_size > 1:  # NCCL would fail later on a duplicate GPU
        raise RetailSimError(f"device: {device!r} under torchrun: every process would use that one GPU; pass "
                             "--device cuda (each process takes the GPU of its LOCAL_RANK) or auto")  # fmt: skip
    return DistributedContext(rank, world_size, local_rank, resolved, rank == 0)


def distributed_context() -> DistributedContext:
    """The running training job's context (inside ``train``, what the trainer set up); outside one, what
    the environment variables say, with the "auto" device."""
    return _active if _active is not None else _context_from_environment("auto")


@contextmanager
def distributed_session(device: str) -> Iterator[DistributedContext]:
    """Set up this process's device and, with WORLD_SIZE > 1, the process group; tear it down on exit
    (also after an error, so a failed run does not leave a group behind). A group the caller already
    initialised is used and left alone."""
    global _active
    context = _context_from_environment(device)
    owns_group = context.world_size > 1 and not dist.is_initialized()
    if context.device.type == "cuda":
        torch.cuda.set_device(context.device)  # NCCL's object collectives use the current device
    if owns_group:
        backend = "nccl" if context.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=PROCESS_GROUP_TIMEOUT)
    _active = context
    try:
        yield context
    finally:
        _active = None
        if owns_group:
            dist.destroy_process_group()
