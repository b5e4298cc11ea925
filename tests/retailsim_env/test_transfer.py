"""Host <-> device copies: the values arrive whatever the device; on CUDA without waiting for queued work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retailsim_env.transfer import to_device, to_host_later


def test_copies_keep_values_and_dtype_on_the_cpu() -> None:
    values = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]  # a strided view
    tensor = to_device(values, torch.device("cpu"))
    assert tensor.dtype == torch.int64 and np.array_equal(tensor.numpy(), values)
    assert np.array_equal(to_host_later(tensor * 2)(), values * 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_copies_arrive_behind_queued_work() -> None:
    device = torch.device("cuda")
    busy = torch.randn(4096, 4096, device=device)
    for _ in range(20):  # keep the device busy while the copies are queued
        busy = busy @ busy / 64
    values = np.random.default_rng(0).integers(0, 1000, 100_000)
    on_device = to_device(values, device)
    result = to_host_later(on_device * 3 + busy[0, 0].isnan().long())
    values[:] = -1  # the source may change once to_device returned: it copied to pinned memory first
    assert np.array_equal(result(), np.random.default_rng(0).integers(0, 1000, 100_000) * 3)
