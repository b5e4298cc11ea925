"""A tiny deterministic TrainTask for the trainer's tests: a 2-layer MLP classifying fixed random points.

64 training points in 4 dimensions, 2 classes from a fixed random linear rule; batches of ``batch_size``
per rank. Options let a test interrupt a run (``fail_at``), script the monitored metric
(``scripted_scores``), or record every step (``steps_seen``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

N_TRAIN, N_VALID, N_FEATURES = 64, 32, 4


class ToyModel(nn.Module):
    """Linear -> LayerNorm -> ReLU -> Dropout -> Linear, plus a marked 2-d parameter (a learned input
    scale) so the no-weight-decay marker is exercised."""

    def __init__(self, hidden: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.input_scale = nn.Parameter(torch.ones(1, N_FEATURES))
        self.input_scale._no_weight_decay = True
        self.fc1 = nn.Linear(N_FEATURES, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, 2)

    def forward(self, x: Tensor) -> Tensor:  # [B, 4] -> logits [B, 2]
        return self.fc2(self.dropout(torch.relu(self.norm(self.fc1(x * self.input_scale)))))


class ToyTask:
    """Classify ``x`` by the sign of a fixed linear rule; monitors validation accuracy unless scripted."""

    monitor_mode = "max"

    def __init__(self, batch_size: int = 8, seed: int = 0, dropout: float = 0.0,
                 fail_at: tuple[int, int] | None = None, scripted_scores: list[float] | None = None) -> None:  # fmt: skip
        self.batch_size, self.seed, self.dropout = batch_size, seed, dropout
        self.fail_at = fail_at  # (epoch, batch): raise when that batch is requested, as a killed job
        self.scripted_scores = scripted_scores  # validation "score" per epoch, monitored instead of accuracy
        self.monitor = "score" if scripted_scores is not None else "accuracy"
        data = torch.Generator().manual_seed(1234)
        rule = torch.randn(N_FEATURES, generator=data)
        self.x = torch.randn(N_TRAIN + N_VALID, N_FEATURES, generator=data)
        self.y = (self.x @ rule > 0).long()
        self.current_epoch = -1
        self.steps_seen: list[tuple[int, float, float]] = []  # (epoch, loss, parameter checksum) per step

    def model_config(self) -> dict:
        return {"hidden": 16, "dropout": self.dropout}

    def build_model(self) -> nn.Module:
        return ToyModel(**self.model_config())

    def train_loader(self, epoch: int, rank: int, world_size: int) -> list[dict[str, Tensor]]:
        """Global batches of ``batch_size * world_size`` from a (seed, epoch) permutation; rank r gets the
        r-th slice of each, so any world size sees the same global batches."""
        self.current_epoch = epoch
        order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(self.seed * 1000 + epoch))
        global_batch = self.batch_size * world_size
        batches = []
        for start in range(0, N_TRAIN - global_batch + 1, global_batch):
            rows = order[start + rank * self.batch_size : start + (rank + 1) * self.batch_size]
            batches.append({"x": self.x[rows], "y": self.y[rows]})
        if self.fail_at is not None and self.fail_at[0] == epoch:
            return _FailingBatches(batches, self.fail_at[1])
        return batches

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = model(batch["x"])
        loss = F.cross_entropy(logits, batch["y"])
        checksum = sum(float(p.detach().double().sum()) for p in model.parameters())
        self.steps_seen.append((self.current_epoch, float(loss.detach()), checksum))
        return loss, {"batch_accuracy": (logits.argmax(-1) == batch["y"]).float().mean()}

    def validate(self, model: nn.Module) -> dict[str, float]:
        x, y = self.x[N_TRAIN:], self.y[N_TRAIN:]
        logits = model(x)
        accuracy = (logits.argmax(-1) == y).float().mean()
        metrics = {"loss": float(F.cross_entropy(logits, y)), "accuracy": float(accuracy)}
        if self.scripted_scores is not None:
            metrics["score"] = self.scripted_scores[self.current_epoch]
        return metrics

    def batch_size_of(self, batch: dict[str, Tensor]) -> int:
        return len(batch["y"])


class Killed(Exception):
    """Raised by a ``fail_at`` loader: the job dies mid-epoch."""


class _FailingBatches(list):
    """The epoch's batches, raising when batch ``fail_index`` is reached: a job killed mid-epoch."""

    def __init__(self, batches: list[dict[str, Tensor]], fail_index: int) -> None:
        super().__init__(batches)
        self.fail_index = fail_index

    def __iter__(self):
        for index, batch in enumerate(list.__iter__(self)):
            if index == self.fail_index:
                raise Killed(f"killed at batch {index}")
            yield batch
