"""Which baskets of a split are evaluated, what they hold and what their customers did before.

The protocol (issue 4): a target is a basket of the split with at least two distinct products whose
customer has at least one earlier basket; its history is *all* of that customer's earlier baskets, across
splits. Baskets are sorted by customer then trip order in the tensor cache, so target row r's history is
the contiguous rows ``r - history_baskets .. r - 1`` and its items are one contiguous slice of
``basket_items``: every history below is a gather of ranges, never a per-customer Python loop.

A history can hold hundreds of baskets (the real validation split: 37k targets, 33M history items), so
histories are built per chunk of targets (``chunks``) rather than for the whole split at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from world_model.arrays import gather_ranges
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.tensor_cache import BASKET_TABLE_COLUMNS, SPLIT_CODES, UNK

MIN_PRODUCTS = 2
MIN_HISTORY_BASKETS = 1
CHUNK_HISTORY_ITEMS = 1 << 22
"""History items gathered at once (~4M: tens of MB per array), which bounds every chunked pass."""
LIMIT_SEED = 0

_COLUMN = {name: i for i, name in enumerate(BASKET_TABLE_COLUMNS)}


@dataclass(frozen=True)
class History:
    """Per-target history in CSR form: entry j belongs to target ``owner[j]`` (0-based within the chunk),
    holds ``values[j]`` (a product vocabulary row or a store row) and was seen ``distance[j]`` baskets
    before the target (1 = the latest earlier basket)."""

    offsets: np.ndarray  # [n + 1] int64
    values: np.ndarray  # [h] int
    distance: np.ndarray  # [h] int64

    @property
    def owner(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))


def history_items(data: PreparedData, ends: np.ndarray, counts: np.ndarray) -> History:
    """The items of baskets ``ends - counts .. ends - 1`` for each (end, count): the history of a target
    at row ``end`` or, with ``end`` one past a customer's last training basket, a training-time history."""
    offsets = np.asarray(data.basket_offsets)
    starts = ends - counts
    item_offsets = np.r_[0, np.cumsum(offsets[ends] - offsets[starts])]
    basket_rows = gather_ranges(starts, ends)
    owner_end = np.repeat(ends, counts)
    lengths = offsets[basket_rows + 1] - offsets[basket_rows]
    distance = np.repeat(owner_end - basket_rows, lengths)
    values = np.asarray(data.basket_items)[gather_ranges(offsets[starts], offsets[ends])]
    return History(item_offsets, values.astype(np.int64), distance.astype(np.int64))


def history_stores(data: PreparedData, ends: np.ndarray, counts: np.ndarray) -> History:
    """The store rows of baskets ``ends - counts .. ends - 1`` for each (end, count), one entry a basket."""
    basket_rows = gather_ranges(ends - counts, ends)
    stores = np.asarray(data.basket_table[:, _COLUMN["store_row"]])[basket_rows]
    distance = np.repeat(ends, counts) - basket_rows
    return History(np.r_[0, np.cumsum(counts)].astype(np.int64), stores.astype(np.int64), distance)


@dataclass(eq=False)
class EvaluationTargets:
    """The targets of one split, row-aligned arrays [n] plus the target item sets in CSR form.

    ``data`` stays attached so that a model being evaluated can compute its own inputs (T1-T6) for
    ``rows``; baselines read histories through ``history_items`` / ``history_stores``.
    """

    data: PreparedData = field(repr=False)
    split: str
    rows: np.ndarray  # [n] int64 basket rows
    customer_row: np.ndarray  # [n] row of customers.npy, 0 = not seen in training
    store_row: np.ndarray  # [n] row of stores.npy (the store-visit label)
    weekday: np.ndarray  # [n] 1 = Sunday .. 7 = Saturday
    hour: np.ndarray
    week_index: np.ndarray
    history_baskets: np.ndarray  # [n] earlier baskets of the customer (all of them are the history)
    basket_size: np.ndarray  # [n] position in the BASKET_SIZE code book, -1 unknown
    item_offsets: np.ndarray  # [n + 1] int64
    items: np.ndarray  # [m] vocabulary rows of the target baskets (UNK included: it counts, never hits)

    @classmethod
    def from_prepared(
        cls, data: PreparedData, split: str, limit: int | None = None, min_products: int = MIN_PRODUCTS
    ) -> EvaluationTargets:
        """The split's baskets with >= ``min_products`` distinct products and >= 1 earlier basket.

        ``limit`` keeps a reproducible random sample of that many targets (in row order), so a quick run
        is spread over all customers instead of the first ones by code. ``min_products=1`` gives every
        store visit with a history (the store baselines calibrate on those)."""
        if split not in SPLIT_CODES:
            raise ValueError(f"split: {split!r} is not one of {sorted(SPLIT_CODES)}")
        table = np.asarray(data.basket_table)
        offsets = np.asarray(data.basket_offsets)
        keep = (
            (table[:, _COLUMN["split"]] == SPLIT_CODES[split])
            & (table[:, _COLUMN["history_baskets"]] >= MIN_HISTORY_BASKETS)
            & (np.diff(offsets) >= min_products)
        )
        rows = np.flatnonzero(keep)
        if limit is not None and limit < len(rows):
            rows = np.sort(np.random.default_rng(LIMIT_SEED).choice(rows, size=limit, replace=False))
        selected = table[rows]
        item_index = gather_ranges(offsets[rows], offsets[rows + 1])
        column = {name: selected[:, i].astype(np.int64) for name, i in _COLUMN.items()}
        return cls(
            data=data,
            split=split,
            rows=rows.astype(np.int64),
            customer_row=column["customer_row"],
            store_row=column["store_row"],
            weekday=column["weekday"],
            hour=column["hour"],
            week_index=column["week_index"],
            history_baskets=column["history_baskets"],
            basket_size=column["BASKET_SIZE"],
            item_offsets=np.r_[0, np.cumsum(offsets[rows + 1] - offsets[rows])].astype(np.int64),
            items=np.asarray(data.basket_items)[item_index].astype(np.int64),
        )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def n_products(self) -> int:
        return self.data.n_products

    @property
    def n_stores(self) -> int:
        return self.data.n_stores

    @property
    def target_sizes(self) -> np.ndarray:
        """|target| [n]: distinct products of each target basket, UNK ones included."""
        return np.diff(self.item_offsets)

    @property
    def item_owner(self) -> np.ndarray:
        """[m] the target (0-based) each entry of ``items`` belongs to."""
        return np.repeat(np.arange(len(self)), self.target_sizes)

    def history_rows(self, i: int) -> np.ndarray:
        """Basket rows of target i's history, oldest first."""
        return np.arange(self.rows[i] - self.history_baskets[i], self.rows[i])

    def history_items(self, select: slice) -> History:
        """History items of targets ``select`` (a chunk from ``chunks``), with their basket distance."""
        return history_items(self.data, self.rows[select], self.history_baskets[select])

    def history_stores(self, select: slice) -> History:
        """Store rows of the history baskets of targets ``select``, with their basket distance."""
        return history_stores(self.data, self.rows[select], self.history_baskets[select])

    def chunks(self, max_items: int = CHUNK_HISTORY_ITEMS) -> Iterator[slice]:
        """Consecutive slices of targets whose histories hold at most ``max_items`` items together
        (a single target with a longer history is a chunk of its own)."""
        offsets = np.asarray(self.data.basket_offsets)
        sizes = offsets[self.rows] - offsets[self.rows - self.history_baskets]
        ends = np.cumsum(sizes)
        start = 0
        while start < len(self):
            budget = (ends[start - 1] if start else 0) + max_items
            stop = max(start + 1, int(np.searchsorted(ends, budget, side="right")))
            yield slice(start, stop)
            start = stop

    @cached_property
    def item_is_repeat(self) -> np.ndarray:
        """[m] bool: the target item was bought by the customer in an earlier basket. UNK is never a
        repeat: two unknown products share the row, so "the same product" cannot be told."""
        repeat = np.zeros(len(self.items), dtype=bool)
        owner = self.item_owner
        for select in self.chunks():
            history = self.history_items(select)
            seen = np.unique(history.owner * self.n_products + history.values)
            lo, hi = self.item_offsets[select.start], self.item_offsets[select.stop]
            keys = (owner[lo:hi] - select.start) * self.n_products + self.items[lo:hi]
            found = np.minimum(np.searchsorted(seen, keys), len(seen) - 1)
            repeat[lo:hi] = seen[found] == keys
        return repeat & (self.items != UNK)
