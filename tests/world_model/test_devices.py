import pytest
import torch

from world_model.devices import resolve_device
from world_model.errors import RetailSimError


def test_auto_and_named_devices_resolve() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_unknown_or_absent_devices_are_one_line_errors_naming_the_argument() -> None:
    with pytest.raises(RetailSimError, match=r"device: 'tpu' is not a device \(auto, cpu, cuda, cuda:N\)"):
        resolve_device("tpu")
    absent = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, on any machine
    with pytest.raises(RetailSimError, match=rf"device: '{absent}' asked, but this machine has \d+ CUDA device"):
        resolve_device(absent)
