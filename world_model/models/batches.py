"""Model inputs for a batch of target baskets, straight from the tensor cache.

A target is a basket row of ``PreparedData`` (``basket_table``); its history is the customer's contiguous
earlier rows. ``BatchBuilder`` turns target rows into the tensors ``BasketWorldModel`` and
``StoreVisitModel`` read (their ``forward`` docstrings list the keys), vectorized over the batch:

- the trip's context: T1 row, T3 of the target's time (with the weeks since the previous trip), the store
  (the true one, or one the caller passes: the store-visit predictor's, in the simulator), and T6: the
  trip's true attributes or the customer's usual mix (``customer_trip_patterns.npy``), chosen per sample;
- the latest ``max_sequence_items`` history items with their price features (T4), basket distance and age;
- the customer's own products and stores with their history statistics (``history.HistoryFeatures``);
- labels: the target's products, store and trip attributes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from world_model.models.basket import TRIP_HEADS
from world_model.models.history import HistoryFeatures
from world_model.pipeline.loader import PreparedData, bert_mask
from world_model.pipeline.tensor_cache import BASKET_COLUMN, PAD

def _pad_ragged(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray, fill: int = PAD) -> np.ndarray:
    lengths = offsets[rows + 1] - offsets[rows]
    out = np.full((len(rows), max(1, int(lengths.max(initial=0)))), fill, dtype=np.int64)
    owner = np.repeat(np.arange(len(rows)), lengths)
    position = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    starts = np.repeat(offsets[rows], lengths)
    out[owner, position] = values[starts + position]
    return out


class BatchBuilder:
    """Builds model batches for target basket rows (module docstring)."""

    def __init__(self, data: PreparedData, max_sequence_items: int = 256, max_candidates: int = 256) -> None:
        self.data = data
        self.table = np.asarray(data.basket_table)
        self.offsets = np.asarray(data.basket_offsets)
        self.items = data.basket_items
        self.max_sequence_items = max_sequence_items
        self.history = HistoryFeatures(self.table, self.offsets, self.items, max_candidates=max_candidates)

    def column(self, name: str, rows: np.ndarray) -> np.ndarray:
        return self.table[rows, BASKET_COLUMN[name]]

    def _context(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        history = self.column("history_baskets", rows)
        previous_week = self.column("week_index", np.maximum(rows - 1, 0))
        week_gap = np.where(history > 0, self.column("week_index", rows) - previous_week, np.nan)
        customer = self.column("customer_row", rows).astype(np.int64)
        return {"customer": customer, "t3": self.data.temporal(rows, week_gap.astype(np.float64))}

    def targets(self, rows: np.ndarray) -> np.ndarray:
        """The target baskets' products [B, M] (vocabulary rows, PAD after)."""
        return _pad_ragged(self.offsets, self.items, rows)

    def trip_labels(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {name: self.column(name, rows).astype(np.int64) for name in TRIP_HEADS}

    def next_basket(self, rows: np.ndarray, store_rows: np.ndarray | None = None,
                    true_trip: np.ndarray | bool = False) -> dict[str, Tensor]:  # fmt: skip
        """Inputs and labels of the basket model. ``store_rows``: the store each trip goes to (default the
        true one). ``true_trip``: per sample (or for all), feed the trip's own T6 instead of the customer's
        usual mix."""
        rows = np.asarray(rows, dtype=np.int64)
        store = self.column("store_row", rows).astype(np.int64) if store_rows is None else np.asarray(store_rows, np.int64)
        batch = self._context(rows)
        true_trip = np.broadcast_to(np.asarray(true_trip, dtype=bool), rows.shape)
        patterns = np.asarray(self.data.trip_patterns[batch["customer"]])
        batch["t6"] = np.where(true_trip[:, None], self.data.trip(rows), patterns).astype(np.float32)
        batch["true_trip"] = true_trip.copy()
        batch["store"] = store
        positions, distance, weeks = self.history.sequence(rows, self.max_sequence_items)
        safe = np.maximum(positions, 0)
        items = np.where(positions >= 0, np.asarray(self.items[safe.ravel()]).reshape(safe.shape), PAD).astype(np.int64)
        raw = np.asarray(self.data.basket_item_prices[safe.ravel()]).reshape(*safe.shape, -1)
        batch.update(items=items, item_basket=distance, item_weeks=weeks, t4=self.data.price_features(items, raw))
        batch["candidates"], batch["candidate_features"] = self.history.products(rows, store)
        batch["targets"] = self.targets(rows)
        batch.update(self.trip_labels(rows))
        return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in batch.items()}

    def masked_basket(self, rows: np.ndarray, rng: np.random.Generator, mask_rate: float,
                      true_trip: np.ndarray | bool = False) -> dict[str, Tensor]:  # fmt: skip
        """``next_basket``'s inputs plus the target basket BERT-masked (``basket_input``, ``basket_labels``)."""
        batch = self.next_basket(rows, true_trip=true_trip)
        masked, labels = bert_mask(batch["targets"].numpy(), self.data.n_products, rng, mask_rate)
        batch["basket_input"], batch["basket_labels"] = torch.from_numpy(masked), torch.from_numpy(labels)
        return batch

    def store_visit(self, rows: np.ndarray) -> dict[str, Tensor]:
        """Inputs and label (``store``) of the store-visit predictor; every row needs an earlier basket."""
        rows = np.asarray(rows, dtype=np.int64)
        if (self.column("history_baskets", rows) < 1).any():
            raise ValueError("store-visit targets need at least one earlier basket")
        batch = self._context(rows)
        batch["previous_store"] = self.column("store_row", rows - 1).astype(np.int64)
        batch["items"] = _pad_ragged(self.offsets, self.items, rows - 1)
        batch["store_candidates"], batch["store_features"] = self.history.stores(rows)
        batch["store"] = self.column("store_row", rows).astype(np.int64)
        return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in batch.items()}


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """The batch's tensors on ``device`` (non-blocking: the copies overlap with work already queued)."""
    return {name: value.to(device, non_blocking=True) for name, value in batch.items()}
