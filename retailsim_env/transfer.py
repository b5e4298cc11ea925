"""Host <-> device copies that do not make the host wait for the device's queue.

A blocking copy (``tensor.to("cuda")``, ``tensor.cpu()``) synchronizes the stream: the host waits until every
kernel already queued has run. A weekly step that cuts its copies into groups (``LearnedDemand``'s
``pipeline_groups``) queues one group's forward and draws the next group's trips meanwhile, which only
overlaps if the next group's inputs reach the device, and the first group's probabilities come back,
without such a wait: through pinned host memory, ``non_blocking`` copies and an event. On a CPU both are
plain tensors (no copy at all where the device is the CPU).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def to_device(values: np.ndarray, device: torch.device) -> torch.Tensor:
    """``values`` as a tensor on ``device``; to CUDA staged in pinned memory and copied ``non_blocking``
    (PyTorch's caching host allocator keeps the pinned block until the copy has run)."""
    tensor = torch.from_numpy(np.ascontiguousarray(values))
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def to_host_later(tensor: torch.Tensor) -> Callable[[], np.ndarray]:
    """A call that returns ``tensor`` as a numpy array: on CUDA the copy to pinned memory is queued now and
    the call waits for it (and only for the work queued before it); elsewhere the call returns at once."""
    if tensor.device.type != "cuda":
        return tensor.numpy
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(tensor.device))  # the stream the copy was queued on

    def result() -> np.ndarray:
        done.synchronize()
        return host.numpy()

    return result
