"""The store-visit predictor: which store a customer's next trip goes to.

    T1 customer 192 | T3 target time 64 | T5 previous store 96 | basket summary 64 = 416
      -> MLP 416 -> 256 -> 256 (LayerNorm, GELU, dropout) -> h
    logits = Linear(h) over the stores  +  pointer scores at the customer's own stores

The basket summary is the masked mean of the previous basket's T2 vectors, projected to 64. The pointer
head scores each store the customer visited before from explicit visit statistics
(``history.HistoryFeatures.stores``: visit shares with and without recency decay, last store, weekday and
day-part shares, personal transitions out of the last store) and ``h``: 81% of trips go to the customer's
top store, so a classifier over 761 stores that must learn each customer's store from T1 alone starts far
behind the primary-store rule; the pointer head starts at it and learns when customers switch.

Loss: cross-entropy with label smoothing (0.1) and class weights (inverse training frequency raised to
``class_weight_power``; 0 gives plain cross-entropy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from world_model.models.history import STORE_FEATURES
from world_model.pipeline.model_inputs import T1_DIM, T2_DIM, T3_DIM, T5_DIM

BASKET_SUMMARY_DIM = 64


@dataclass
class StoreVisitConfig:
    """Sizes and loss settings of the store-visit predictor."""

    n_stores: int
    """Rows of the store table (``PreparedData.n_stores``, UNK included)."""
    hidden: int = 256
    """Width of the MLP's two hidden layers."""
    dropout: float = 0.1
    """Dropout after each hidden layer."""
    pointer_hidden: int = 32
    """Width of the pointer head: its query/key projections and its MLP."""
    label_smoothing: float = 0.1
    """Label smoothing of the cross-entropy."""
    class_weight_power: float = 0.25
    """Class weight = (training trips of the store + 1) ^ -power, normalized to mean 1 over trips."""

    def to_dict(self) -> dict:
        return asdict(self)


class StoreVisitModel(nn.Module):
    """Store logits [B, n_stores] for a batch: customer [B], t3 [B, 64], previous_store [B], items [B, L]
    (the previous basket's products, 0 = PAD), store_candidates [B, S] (-1 = none), store_features
    [B, S, len(STORE_FEATURES)]."""

    def __init__(self, config: StoreVisitConfig, products: np.ndarray, customers: np.ndarray,
                 stores: np.ndarray) -> None:  # fmt: skip
        super().__init__()
        self.config = config
        self.products = nn.Embedding.from_pretrained(torch.tensor(np.asarray(products)), freeze=True)
        self.customers = nn.Embedding.from_pretrained(torch.tensor(np.asarray(customers)), freeze=True)
        self.stores = nn.Embedding.from_pretrained(torch.tensor(np.asarray(stores)), freeze=True)
        self.basket_summary = nn.Linear(T2_DIM, BASKET_SUMMARY_DIM)
        hidden = config.hidden
        self.mlp = nn.Sequential(
            nn.Linear(T1_DIM + T3_DIM + T5_DIM + BASKET_SUMMARY_DIM, hidden), nn.LayerNorm(hidden), nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(config.dropout),
        )  # fmt: skip
        self.classifier = nn.Linear(hidden, config.n_stores)
        self.store_key = nn.Linear(T5_DIM, config.pointer_hidden)
        self.store_query = nn.Linear(hidden, config.pointer_hidden)
        self.pointer = nn.Sequential(
            nn.Linear(len(STORE_FEATURES) + config.pointer_hidden, config.pointer_hidden), nn.GELU(),
            nn.Linear(config.pointer_hidden, config.pointer_hidden), nn.GELU(), nn.Linear(config.pointer_hidden, 1),
        )  # fmt: skip
        self.register_buffer("class_weights", torch.ones(config.n_stores))

    def set_class_weights(self, trips_per_store: np.ndarray) -> None:
        """Class weights from training trips per store row (see ``StoreVisitConfig.class_weight_power``)."""
        counts = torch.as_tensor(np.asarray(trips_per_store, dtype=np.float64))
        weights = (counts + 1.0) ** -self.config.class_weight_power
        weights = weights / ((weights * counts).sum() / counts.sum().clamp(min=1))
        self.class_weights.copy_(weights.float())

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        items = batch["items"]
        real = (items > 0).unsqueeze(-1)
        basket = (self.products(items) * real).sum(1) / real.sum(1).clamp(min=1)  # [B, 256]
        features = torch.cat([self.customers(batch["customer"]), batch["t3"], self.stores(batch["previous_store"]),
                              self.basket_summary(basket)], -1)  # fmt: skip
        h = self.mlp(features)  # [B, hidden]
        logits = self.classifier(h)  # [B, S]
        candidates = batch["store_candidates"]
        valid = candidates >= 0
        safe = candidates.clamp(min=0)
        interaction = self.store_query(h).unsqueeze(1) * self.store_key(self.stores(safe))  # [B, C, pointer_hidden]
        pointer = self.pointer(torch.cat([batch["store_features"], interaction], -1)).squeeze(-1)  # [B, C]
        return logits.scatter_add(1, safe, pointer.masked_fill(~valid, 0.0).to(logits.dtype))

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), labels, weight=self.class_weights,
                               label_smoothing=self.config.label_smoothing)  # fmt: skip
