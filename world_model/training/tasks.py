"""The two world models as ``TrainTask``s: what ``retailsim train store-visit`` and ``train world-model`` run.

Both read a work directory's tensor cache through ``PreparedData`` and build batches with
``models.batches.BatchBuilder``. Training targets follow the evaluation protocol's rule, so the models are
trained on the kind of trip they are judged on: basket-model targets are training-split baskets with >= 2
distinct products and >= 1 earlier basket (``evaluation.targets``); store-visit targets are every training
trip with an earlier one (a one-product trip is still a visit). Validation uses the validation split's
evaluation targets (at most ``max_validation`` of them, a fixed random subset).

Batches are a pure function of (seed, epoch, rank, world size): each epoch permutes the targets with
``default_rng([seed, epoch])``, cuts batches, and gives rank r the batches r, r + W, ... (the same count on
every rank), which is what exact resume and DistributedDataParallel need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from world_model.errors import RetailSimError
from world_model.evaluation.targets import EvaluationTargets
from world_model.models.basket import (
    TRIP_HEADS,
    BasketModelConfig,
    BasketWorldModel,
    basket_contrastive_loss,
    focal_loss,
    multilabel_softmax_loss,
    sampled_softmax_loss,
    top_k_products,
    trip_head_loss,
)
from world_model.models.batches import BatchBuilder, to_device
from world_model.models.store_visit import StoreVisitConfig, StoreVisitModel
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.tensor_cache import BASKET_COLUMN, SPLIT_CODES



def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


class TargetBatches:
    """The batches of one epoch for one rank (module docstring); ``len`` is the rank's batch count."""

    def __init__(self, rows: np.ndarray, batch_size: int, seed: int, epoch: int, rank: int, world_size: int,
                 make_batch: Callable[[np.ndarray, np.random.Generator], dict[str, Tensor]]) -> None:  # fmt: skip
        order = np.random.default_rng([seed, epoch]).permutation(rows)
        per_rank = len(order) // (batch_size * world_size) if world_size > 1 else -(-len(order) // batch_size)
        self.batches = [order[i * batch_size : (i + 1) * batch_size] for i in range(rank, per_rank * world_size, world_size)]
        self.seed, self.epoch, self.rank, self.make_batch = seed, epoch, rank, make_batch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        for i, rows in enumerate(self.batches):
            yield self.make_batch(rows, np.random.default_rng([self.seed, self.epoch, self.rank, i]))


def _validation_rows(data: PreparedData, limit: int | None) -> np.ndarray:
    """The validation targets the monitor is computed on; none would make every epoch's figure
    meaningless (and best.pt and early stopping with it), so that is an error before any training."""
    rows = EvaluationTargets.from_prepared(data, "validation", limit=limit).rows
    if len(rows) == 0:
        raise RetailSimError(f"{data.workdir}: the validation split has no targets; run `retailsim pipeline run` "
                             "with a --split whose TRAIN_END leaves validation weeks with baskets")  # fmt: skip
    return rows


def trip_classes(data: PreparedData) -> dict[str, int]:
    books = data.vocab["trip_code_books"]
    return {name: len(books[name]) for name in TRIP_HEADS if name in books}


# ---------------------------------------------------------------------------------------------- store visit


@dataclass
class StoreVisitTaskConfig:
    """Data settings of store-visit training (the optimiser's are ``TrainConfig``'s)."""

    batch_size: int = 512
    """Targets per batch and process."""
    max_validation: int | None = 10_000
    """Validation targets scored each epoch (a fixed random subset); None: all."""
    seed: int = 0
    """Batch order seed."""


class StoreVisitTask:
    """Trains ``StoreVisitModel``; validation monitors top-1 accuracy on the validation targets."""

    monitor, monitor_mode = "top1", "max"

    def __init__(self, data: PreparedData, model_config: StoreVisitConfig | None = None,
                 task_config: StoreVisitTaskConfig | None = None) -> None:  # fmt: skip
        self.data = data
        self.config = model_config or StoreVisitConfig(n_stores=data.n_stores)
        self.task_config = task_config or StoreVisitTaskConfig()
        self.builder = BatchBuilder(data)
        table = self.builder.table
        self.rows = np.flatnonzero((table[:, BASKET_COLUMN["split"]] == SPLIT_CODES["train"]) & (table[:, BASKET_COLUMN["history_baskets"]] > 0))
        self.validation_rows = _validation_rows(data, self.task_config.max_validation)

    def model_config(self) -> dict:
        return {"kind": "store_visit", "config": self.config.to_dict(), "task": asdict(self.task_config)}

    def build_model(self) -> nn.Module:
        model = StoreVisitModel(self.config, self.data.products, self.data.customers, self.data.stores)
        stores = self.builder.column("store_row", self.rows)
        model.set_class_weights(np.bincount(stores, minlength=self.data.n_stores))
        return model

    def train_loader(self, epoch: int, rank: int, world_size: int) -> TargetBatches:
        return TargetBatches(self.rows, self.task_config.batch_size, self.task_config.seed, epoch, rank, world_size,
                             lambda rows, _rng: self.builder.store_visit(rows))  # fmt: skip

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = model(batch)
        loss = unwrap(model).loss(logits, batch["store"])
        return loss, {"accuracy": (logits.argmax(1) == batch["store"]).float().mean().detach()}

    def validate(self, model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        hits, losses, count = 0.0, 0.0, 0
        for start in range(0, len(self.validation_rows), 2048):
            batch = to_device(self.builder.store_visit(self.validation_rows[start : start + 2048]), device)
            logits = model(batch).float()
            hits += (logits.argmax(1) == batch["store"]).sum().item()
            losses += torch.nn.functional.cross_entropy(logits, batch["store"], reduction="sum").item()
            count += len(batch["store"])
        return {"top1": hits / max(count, 1), "log_loss": losses / max(count, 1)}

    def batch_size_of(self, batch: dict[str, Tensor]) -> int:
        return len(batch["store"])


# ---------------------------------------------------------------------------------------------- basket model


@dataclass
class BasketTaskConfig:
    """Data and loss settings of basket-model training."""

    batch_size: int = 256
    """Targets per batch and process."""
    true_trip_rate: float = 0.5
    """Share of samples fed the trip's own T6 instead of the customer's usual mix, so one model serves
    both evaluation variants; the trip heads learn only from the others (their answer is in the input)."""
    aux_weight: float = 0.2
    """Weight of the trip heads' loss."""
    sampled_negatives: int | None = None
    """Next basket: a sampled softmax over the targets, the customer's products and this many drawn
    products; None: the full softmax over the vocabulary."""
    focal_weight: float = 0.6
    """Masked objective: weight of the focal loss on the masked items."""
    contrastive_weight: float = 0.2
    """Masked objective: weight of the history-vs-basket InfoNCE."""
    mask_rates: tuple[float, float, float] = (0.15, 0.15, 0.20)
    """Masked objective: masking rate of the warmup, main and finetune phases (thirds of the epochs). The
    phases' learning rates (1e-5 / 5e-5 / 1e-5 in the design) come from the trainer's warmup + cosine:
    ``--lr 5e-5 --min-lr-ratio 0.2`` (``TrainConfig.min_lr_ratio``; its default is 0.1)."""
    max_validation: int | None = 5_000
    """Validation targets scored each epoch (a fixed random subset); None: all."""
    seed: int = 0
    """Batch order and sampling seed."""


class BasketTask:
    """Trains ``BasketWorldModel`` with its configured objective. Next basket: validation monitors NDCG@10
    on the validation targets (true store, the customer's usual trip mix). Masked: masked-item accuracy.

    ``epochs``: the run's epoch count (``TrainConfig.epochs``), which the masked objective's masking phases
    divide in thirds; the default 1 puts every epoch after the first in the finetune phase."""

    monitor_mode = "max"

    def __init__(self, data: PreparedData, model_config: BasketModelConfig | None = None,
                 task_config: BasketTaskConfig | None = None, epochs: int = 1) -> None:  # fmt: skip
        self.data = data
        self.config = model_config or BasketModelConfig.small(n_products=data.n_products, trip_classes=trip_classes(data))
        self.task_config = task_config or BasketTaskConfig()
        self.epochs = epochs
        self.monitor = "ndcg@10" if self.config.objective == "next_basket" else "masked_accuracy"
        self.builder = BatchBuilder(data, max_sequence_items=self.config.max_sequence_items)
        self.rows = EvaluationTargets.from_prepared(data, "train").rows
        self.validation_rows = _validation_rows(data, self.task_config.max_validation)

    def model_config(self) -> dict:
        return {"kind": "basket", "config": self.config.to_dict(), "task": asdict(self.task_config)}

    def build_model(self) -> nn.Module:
        return BasketWorldModel(self.config, self.data.products, self.data.customers, self.data.stores)

    def mask_rate(self, epoch: int) -> float:
        phase = min(2, 3 * epoch // max(self.epochs, 1))
        return self.task_config.mask_rates[phase]

    def _batch(self, rows: np.ndarray, rng: np.random.Generator, epoch: int) -> dict[str, Tensor]:
        true_trip = rng.random(len(rows)) < self.task_config.true_trip_rate
        if self.config.objective == "masked":
            return self.builder.masked_basket(rows, rng, self.mask_rate(epoch), true_trip=true_trip)
        return self.builder.next_basket(rows, true_trip=true_trip)

    def train_loader(self, epoch: int, rank: int, world_size: int) -> TargetBatches:
        return TargetBatches(self.rows, self.task_config.batch_size, self.task_config.seed, epoch, rank, world_size,
                             lambda rows, rng: self._batch(rows, rng, epoch))  # fmt: skip

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        out = model(batch)
        labels = {name: batch[name].masked_fill(batch["true_trip"], -1) for name in TRIP_HEADS}
        aux = trip_head_loss(out, labels)
        tc = self.task_config
        if self.config.objective == "masked":
            focal = focal_loss(out["masked_logits"], batch["basket_labels"])
            contrastive = basket_contrastive_loss(out["encoder_summary"], out["basket_embedding"])
            loss = tc.focal_weight * focal + tc.contrastive_weight * contrastive + tc.aux_weight * aux
            return loss, {"focal": focal.detach(), "contrastive": contrastive.detach(), "aux": aux.detach()}
        if tc.sampled_negatives:
            basket = sampled_softmax_loss(out["logits"], batch["targets"], batch["candidates"], tc.sampled_negatives)
        else:
            basket = multilabel_softmax_loss(out["logits"], batch["targets"])
        return basket + tc.aux_weight * aux, {"basket": basket.detach(), "aux": aux.detach()}

    def validate(self, model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        sums: dict[str, float] = {}
        count = 0  # samples for the ranking scores' means; masked items for the masked accuracy
        step = self.task_config.batch_size  # the scan holds [L, batch, d_inner, d_state] tensors: keep batches modest
        for start in range(0, len(self.validation_rows), step):
            rows = self.validation_rows[start : start + step]
            if self.config.objective == "masked":
                batch = to_device(self.builder.masked_basket(rows, np.random.default_rng([self.task_config.seed, start]),
                                                       self.task_config.mask_rates[1]), device)  # fmt: skip
                logits = model(batch)["masked_logits"]
                chosen = batch["basket_labels"] != -100
                _add(sums, "masked_accuracy", ((logits.argmax(-1) == batch["basket_labels"]) & chosen).sum().item())
                count += int(chosen.sum().item())  # the accuracy over all masked items, not a mean of batches'
            else:
                batch = to_device(self.builder.next_basket(rows), device)
                for name, value in ranking_scores(model(batch)["logits"], batch["targets"], k=10).items():
                    _add(sums, name, value.sum().item())
                count += len(rows)
        return {name: value / max(count, 1) for name, value in sums.items()}

    def batch_size_of(self, batch: dict[str, Tensor]) -> int:
        return len(batch["targets"])


def ranking_scores(logits: Tensor, targets: Tensor, k: int) -> dict[str, Tensor]:
    """Per-sample recall@k and NDCG@k (binary relevance, ideal DCG over min(|target|, k)); targets [B, M]
    hold vocabulary rows, PAD (0) after. For validation during training; the reported figures come from
    ``world_model.evaluation``."""
    top = top_k_products(logits, k)  # [B, k]
    real = targets > 0
    hits = ((top.unsqueeze(2) == targets.unsqueeze(1)) & real.unsqueeze(1)).any(2).float()  # [B, k'], k' <= k
    size = real.sum(1).clamp(min=1)
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, device=logits.device, dtype=torch.float32))[: top.shape[1]]
    ideal = torch.cumsum(discount, 0)[(size.clamp(max=len(discount)) - 1)]
    return {f"recall@{k}": hits.sum(1) / size, f"ndcg@{k}": (hits * discount).sum(1) / ideal}


def _add(sums: dict[str, float], name: str, value: float) -> None:
    sums[name] = sums.get(name, 0.0) + value

