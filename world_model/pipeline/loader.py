"""Reading WORKDIR/prepared/ for training: memory-mapped inputs, datasets, bucket batching, BERT masking.

``PreparedData`` is the one entry point the models use: it maps the tensor cache (see ``tensor_cache``)
and computes the per-sample inputs (T3, T4, T6) for a batch in one vectorized call each. Arrays are opened
lazily in each process and dropped when pickled, so DataLoader workers (fork or spawn) map the files
themselves instead of copying them.

Batches are dicts of tensors; shapes use B = batch, L = padded history items, M = padded target items:

- ``customer`` [B] long (row of ``customers.npy``, T1), ``store`` [B] long (row of ``stores.npy``, T5)
- ``t3`` [B, 64] float, ``t6`` [B, 48] (the target trip's true context), ``t6_patterns`` [B, 48] (the
  customer's usual context: what the simulator knows before the trip)
- ``items`` [B, L] long: product vocabulary rows of the last ``history_baskets`` earlier baskets, oldest
  first, PAD (0) after; ``item_basket`` [B, L] long: 1 = the latest earlier basket, 2 = the one before, ...,
  0 on padding; ``t4`` [B, L, 64] float: price features of each item at its basket's store and week
- ``targets`` [B, M] long: the target basket's products, PAD after
- with masking, ``labels`` [B, L] long: the original row where an item was masked, -100 elsewhere
  (``torch.nn.functional.cross_entropy``'s ignore index).

T1, T2 and T5 stay rows (``customer``, ``items``, ``store``): a model embeds them with
``nn.Embedding.from_pretrained(torch.from_numpy(data.products))`` and so on, and can fine-tune them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from world_model.errors import RetailSimError
from world_model.pipeline.model_inputs import monday_of, one_hot, shop_dates, temporal_features, trip_features
from world_model.pipeline.price_features import PriceFeatureEncoder
from world_model.pipeline.runner import check_built_together
from world_model.pipeline.tensor_cache import (
    BASKET_ITEM_PRICES,
    BASKET_ITEMS,
    BASKET_OFFSETS,
    BASKET_TABLE,
    BASKET_TABLE_COLUMNS,
    CUSTOMERS,
    MASK,
    PAD,
    PRODUCT_SPECIALS,
    PRODUCTS,
    STORES,
    TRIP_PATTERNS,
    VOCAB,
)

IGNORE_INDEX = -100
_COLUMN = {name: i for i, name in enumerate(BASKET_TABLE_COLUMNS)}
_ARRAYS = {
    "products": PRODUCTS, "stores": STORES, "customers": CUSTOMERS, "trip_patterns": TRIP_PATTERNS,
    "basket_table": BASKET_TABLE, "basket_offsets": BASKET_OFFSETS, "basket_items": BASKET_ITEMS,
    "basket_item_prices": BASKET_ITEM_PRICES,
}  # fmt: skip


class PreparedData:
    """The tensor cache of a work directory, memory-mapped on first use in each process."""

    def __init__(self, workdir: Path | str) -> None:
        self.workdir = Path(workdir)
        self.prepared = self.workdir / "prepared"
        vocab_path = self.prepared / VOCAB
        if not vocab_path.exists():
            raise RetailSimError(f"{vocab_path}: missing; run 'retailsim pipeline run' (stage tensor_cache) first")
        check_built_together(self.workdir, "tensor_cache")
        self.vocab = json.loads(vocab_path.read_text())
        self.train_end: int = self.vocab["split"]["train_end"]
        self.price_encoder = PriceFeatureEncoder.load(self.workdir / "features")
        self._arrays: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str) -> np.ndarray:
        if name in _ARRAYS:
            arrays = self.__dict__.setdefault("_arrays", {})
            if name not in arrays:
                arrays[name] = np.load(self.prepared / _ARRAYS[name], mmap_mode="r")
            return arrays[name]
        raise AttributeError(name)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": {}}

    @property
    def n_products(self) -> int:
        """Rows of the product vocabulary, PAD/UNK/MASK included."""
        return len(self.vocab["products"]["codes"]) + PRODUCT_SPECIALS

    @property
    def n_stores(self) -> int:
        return len(self.vocab["stores"]["codes"]) + 1

    @cached_property
    def first_monday(self) -> np.datetime64:
        """The Monday of data week 1 (``week_index`` 1), from the baskets' dates and week indices."""
        table = np.asarray(self.basket_table)
        monday = monday_of(shop_dates(table[:, _COLUMN["shop_date"]]))
        return np.min(monday - (table[:, _COLUMN["week_index"]].astype(np.int64) - 1) * 7)

    @cached_property
    def n_weeks(self) -> int:
        """The last data week index of the baskets."""
        return int(np.asarray(self.basket_table[:, _COLUMN["week_index"]]).max())

    def basket(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Vocabulary rows [k] and raw price inputs [k, 6] of one basket."""
        start, stop = self.basket_offsets[row], self.basket_offsets[row + 1]
        return np.asarray(self.basket_items[start:stop]), np.asarray(self.basket_item_prices[start:stop])

    def basket_column(self, name: str, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.basket_table[rows, _COLUMN[name]])

    def temporal(self, rows: np.ndarray, week_gap: np.ndarray) -> np.ndarray:
        """T3 [n, 64] of baskets ``rows``, given the weeks since each customer's previous trip (NaN: none)."""
        table = np.asarray(self.basket_table[rows])
        return temporal_features(
            shop_dates(table[:, _COLUMN["shop_date"]]),
            table[:, _COLUMN["weekday"]],
            table[:, _COLUMN["hour"]],
            table[:, _COLUMN["week_index"]],
            week_gap,
            table[:, _COLUMN["history_baskets"]],
            self.train_end,
        )

    def trip(self, rows: np.ndarray) -> np.ndarray:
        """T6 [n, 48] one-hots of the baskets' own trip attributes."""
        table = np.asarray(self.basket_table[rows])
        books = self.vocab["trip_code_books"]
        return trip_features({a: one_hot(table[:, _COLUMN[a]], len(books[a])) for a in books})

    def price_features(self, items: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """T4 [..., 64] of vocabulary rows ``items`` [...] with raw price inputs [..., 6]."""
        shape = items.shape
        index_rows = np.where(items >= PRODUCT_SPECIALS, items - PRODUCT_SPECIALS, -1).ravel()
        encoded = self.price_encoder.encode(raw.reshape(-1, raw.shape[-1]), index_rows)
        return encoded.reshape(*shape, encoded.shape[-1])


def _pad(arrays: list[np.ndarray], fill: int | float, dtype) -> np.ndarray:
    width = max((len(a) for a in arrays), default=0)
    out = np.full((len(arrays), width, *arrays[0].shape[1:]) if arrays else (0, 0), fill, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def bert_mask(
    items: np.ndarray, n_products: int, rng: np.random.Generator, rate: float = 0.15
) -> tuple[np.ndarray, np.ndarray]:
    """BERT-style masking of product rows: each real product (not PAD, UNK or MASK) is chosen with
    probability ``rate``; a chosen one becomes MASK 80% of the time, a uniformly random product 10%, and
    stays 10%. Returns (masked items, labels) with labels = the original row where chosen, -100 elsewhere."""
    chosen = (items >= PRODUCT_SPECIALS) & (rng.random(items.shape) < rate)
    labels = np.where(chosen, items, IGNORE_INDEX)
    action = rng.random(items.shape)
    masked = items.copy()
    masked[chosen & (action < 0.8)] = MASK
    swap = chosen & (action >= 0.8) & (action < 0.9)
    masked[swap] = rng.integers(PRODUCT_SPECIALS, n_products, size=int(swap.sum()))
    return masked, labels


def _read_samples(data: PreparedData, name: str, columns: tuple[str, ...]) -> list[np.ndarray]:
    """Sample columns as numpy: int64, except ``week_gap`` float64 (NaN for a cold start)."""
    path = data.prepared / name
    if not path.exists():
        raise RetailSimError(f"{path}: missing (split must be train, validation or test)")
    table = pq.read_table(path, columns=list(columns))
    return [
        table.column(c).to_numpy(zero_copy_only=False).astype(np.float64 if c == "week_gap" else np.int64)
        for c in columns
    ]


class NextBasketDataset(Dataset):
    """Samples of ``prepared/{split}_next_basket.parquet``: the customer's last ``history_baskets`` baskets
    before the target (1 = the design's input basket; cold-start samples have none) and the target."""

    def __init__(self, data: PreparedData, split: str, history_baskets: int = 1) -> None:
        columns = _read_samples(data, f"{split}_next_basket.parquet", ("target_basket_row", "num_history_baskets", "week_gap"))
        self.data, self.history_baskets = data, history_baskets
        self.targets, self.history, self.week_gap = columns

    def __len__(self) -> int:
        return len(self.targets)

    def lengths(self) -> np.ndarray:
        """History items per sample, for bucket batching."""
        offsets = np.asarray(self.data.basket_offsets)
        first = self.targets - np.minimum(self.history, self.history_baskets)
        return offsets[self.targets] - offsets[first]

    def __getitem__(self, i: int) -> dict:
        target = int(self.targets[i])
        parts = [self.data.basket(target - k) + (k,) for k in range(min(self.history[i], self.history_baskets), 0, -1)]
        items, _ = self.data.basket(target)
        return {
            "row": target,
            "week_gap": self.week_gap[i],
            "items": np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32),
            "prices": np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, 6), np.float32),
            "item_basket": np.concatenate([np.full(len(p[0]), p[2]) for p in parts]) if parts else np.zeros(0, np.int64),
            "targets": items,
        }


class StoreVisitDataset(Dataset):
    """Samples of ``prepared/{split}_store_visit.parquet``: the previous basket, the target's time, and the
    target store as the label."""

    def __init__(self, data: PreparedData, split: str) -> None:
        columns = _read_samples(data, f"{split}_store_visit.parquet", ("previous_basket_row", "target_basket_row", "week_gap"))
        self.data = data
        self.previous, self.targets, self.week_gap = columns

    def __len__(self) -> int:
        return len(self.targets)

    def lengths(self) -> np.ndarray:
        offsets = np.asarray(self.data.basket_offsets)
        return offsets[self.previous + 1] - offsets[self.previous]

    def __getitem__(self, i: int) -> dict:
        items, prices = self.data.basket(int(self.previous[i]))
        return {
            "row": int(self.targets[i]),
            "week_gap": self.week_gap[i],
            "items": items,
            "prices": prices,
            "item_basket": np.ones(len(items), np.int64),
            "previous_row": int(self.previous[i]),
        }


class Collator:
    """Pads a list of samples into a batch and computes T3, T4 and T6 for it (module docstring).

    With ``mask_rate`` > 0 the history items are BERT-masked. The random stream is seeded from ``seed``
    and the DataLoader worker's id, so workers do not repeat each other's masks."""

    def __init__(self, data: PreparedData, mask_rate: float = 0.0, seed: int = 0) -> None:
        self.data, self.mask_rate, self.seed = data, mask_rate, seed
        self._rng: np.random.Generator | None = None

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        data = self.data
        rows = np.array([s["row"] for s in samples], dtype=np.int64)
        week_gap = np.array([s["week_gap"] for s in samples], dtype=np.float64)
        items = _pad([s["items"].astype(np.int64) for s in samples], PAD, np.int64)
        prices = _pad([s["prices"] for s in samples], 0.0, np.float32)
        customer = data.basket_column("customer_row", rows).astype(np.int64)
        batch = {
            "customer": customer,
            "store": data.basket_column("store_row", rows).astype(np.int64),
            "t3": data.temporal(rows, week_gap),
            "t6": data.trip(rows),
            "t6_patterns": np.asarray(data.trip_patterns[customer]),
            "items": items,
            "item_basket": _pad([s["item_basket"].astype(np.int64) for s in samples], 0, np.int64),
            "t4": data.price_features(items, prices),
        }
        if "targets" in samples[0]:
            batch["targets"] = _pad([s["targets"].astype(np.int64) for s in samples], PAD, np.int64)
        else:
            batch["previous_store"] = data.basket_column("store_row", np.array([s["previous_row"] for s in samples])).astype(np.int64)
        if self.mask_rate > 0:
            batch["items"], batch["labels"] = bert_mask(items, data.n_products, self._generator(), self.mask_rate)
            # T4 was built from the true items: several of its columns are the product's own statistics, so
            # a masked (or swapped) position keeping them would give its label away
            batch["t4"][batch["items"] != items] = 0.0
        return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in batch.items()}

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            info = torch.utils.data.get_worker_info()
            self._rng = np.random.default_rng([self.seed, 0 if info is None else info.id + 1])
        return self._rng


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of samples of similar length, so padding stays small: each epoch shuffles the samples, cuts
    them into buckets of ``batch_size x bucket_batches``, sorts each bucket by length, slices batches and
    shuffles the batches. Deterministic for a seed and the epoch set with ``set_epoch``."""

    def __init__(self, lengths: np.ndarray, batch_size: int, shuffle: bool = True, seed: int = 0,
                 bucket_batches: int = 50, drop_last: bool = False) -> None:  # fmt: skip
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths, self.batch_size, self.shuffle, self.seed = np.asarray(lengths), batch_size, shuffle, seed
        self.bucket_batches, self.drop_last, self.epoch = bucket_batches, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        bucket = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(order), bucket):
            chunk = order[start : start + bucket]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return (b.tolist() for b in self._batches())

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full if self.drop_last or not rest else full + 1


def make_loader(
    dataset: NextBasketDataset | StoreVisitDataset,
    batch_size: int = 256,
    shuffle: bool = True,
    mask_rate: float = 0.0,
    num_workers: int = 0,
    prefetch_factor: int = 4,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader with bucket batching, optional BERT masking and, with workers, prefetching."""
    sampler = BucketBatchSampler(dataset.lengths(), batch_size, shuffle=shuffle, seed=seed)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=Collator(dataset.data, mask_rate, seed),
        num_workers=num_workers,
        prefetch_factor=prefetch_factor if num_workers else None,
        persistent_workers=num_workers > 0,
    )
