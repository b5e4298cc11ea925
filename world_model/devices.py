"""Which torch device a caller's ``device`` argument names, checked where the argument comes in."""

from __future__ import annotations

import torch

from world_model.errors import RetailSimError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``device`` as a torch device: "auto" is CUDA where there is one, else the CPU. A name torch does not
    know, or a CUDA device this machine lacks, is a one-line error naming the argument (torch's own would
    come later, from deep inside a model's ``to``)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise RetailSimError(f"device: {device!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if resolved.type == "cuda" and not (torch.cuda.is_available() and (resolved.index or 0) < torch.cuda.device_count()):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise RetailSimError(f"device: {device!r} asked, but this machine has {count} CUDA device(s)")
    return resolved
