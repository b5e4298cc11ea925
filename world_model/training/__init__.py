"""The generic training loop of the world models (``train``), its configuration (``TrainConfig``), the
interface a model implements (``TrainTask``), the process layout under ``torchrun``
(``distributed_context``) and the checkpoint reader for consumers (``load_checkpoint``)."""

from world_model.training.checkpoint import load_checkpoint
from world_model.training.config import TrainConfig
from world_model.training.distributed import DistributedContext, distributed_context
from world_model.training.trainer import TrainTask, train

__all__ = ["DistributedContext", "TrainConfig", "TrainTask", "distributed_context", "load_checkpoint", "train"]
