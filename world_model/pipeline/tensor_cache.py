"""The tensor cache (stage ``tensor_cache``, WORKDIR/prepared/): what a data loader memory-maps.

Training reads millions of samples, each touching a customer, a store and dozens of products; joining
parquet per sample would dominate. So this stage lays everything out as ``.npy`` arrays addressed by
integer rows, which ``np.load(mmap_mode="r")`` maps without reading (the page cache shares them between
loader workers), and records the code -> row maps in ``vocab.json``:

- ``products.npy`` [P + 3, 256] float32, T2: rows 0 PAD (zeros), 1 UNK (the mean embedding: products first
  sold after training), 2 MASK (a fixed random vector of the mean norm, seeded), then the training products
  in the product index's order (vocabulary row = index row + 3).
- ``stores.npy`` [S + 1, 96] float32, T5: row 0 UNK (the mean training store), then the store features.
- ``customers.npy`` [C + 1, 192] float32, T1 = static 64 | history 96 | affinity 32. History is blended
  toward the customer's segment: w x own + (1 - w) x segment prior, w = min(1, trips / 20), the prior being
  the w-weighted mean history of training customers with the same segment one-hots (all of them when the
  segment has no weight), so a customer with two trips is not described by two trips' noise. Affinity:
  loyalty, switching frequency, stores visited (log, standardized), top-1/2/3 visit shares, visit entropy
  / log 10, w, then the visit-share-weighted format one-hots (16) and first 8 operational features of the
  stores visited. Row 0 UNK: static zeros, the population prior as history, the mean affinity.
- ``customer_trip_patterns.npy`` [C + 1, 48] float32: T6 from each customer's mission-pattern shares, the
  trip context the simulator assumes before a trip happens (row 0: the population mean).
- Baskets of named customers, in ``baskets.parquet`` row order (by customer, then trip order, so a
  customer's history is the contiguous rows before a basket): ``basket_offsets.npy`` [B + 1] int64,
  ``basket_items.npy`` [items] int32 vocabulary rows (each distinct product once, by PROD_CODE),
  ``basket_item_prices.npy`` [items, 6] float32 raw price inputs (``price_features.RAW_PRICE_COLUMNS``) of
  each item at its basket's store and week, and ``basket_table.npy`` [B, 12] int32 (columns in
  ``BASKET_TABLE_COLUMNS``; trip attributes as code-book positions, -1 unknown).

Everything fitted (the vocabularies, code books, priors, the UNK rows) comes from training-week
artifacts; baskets of every split are included because history and targets need them, and the arrays are
written in chunks by plain appends, so memory does not grow with the number of baskets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from world_model.data.duckdb_util import sql_string
from world_model.pipeline.customers import AFFINITY, MISSION_ATTRIBUTES, MISSIONS, VISITS, column_slug
from world_model.pipeline.entity_features import (
    COLD_START_TRIPS,
    CUSTOMER_INDEX,
    CUSTOMER_MATRIX,
    CUSTOMER_STATIC_SLOTS,
    STORE_INDEX,
    STORE_MATRIX,
    training_vocabulary,
)
from world_model.pipeline.model_inputs import T1_DIM, TRIP_ATTRIBUTE_SLOTS, trip_features
from world_model.pipeline.price_features import RAW_PRICE_COLUMNS, price_inputs_sql
from world_model.pipeline.prices import OUTPUT as PRICES
from world_model.pipeline.product_features import EMBEDDING_INDEX_FILE, EMBEDDINGS_FILE
from world_model.pipeline.runner import Stage, StageContext
from world_model.pipeline.samples import BASKETS

VOCAB = "vocab.json"
PRODUCTS, STORES, CUSTOMERS = "products.npy", "stores.npy", "customers.npy"
TRIP_PATTERNS = "customer_trip_patterns.npy"
BASKET_OFFSETS, BASKET_ITEMS = "basket_offsets.npy", "basket_items.npy"
BASKET_ITEM_PRICES, BASKET_TABLE = "basket_item_prices.npy", "basket_table.npy"

PAD, UNK, MASK = 0, 1, 2
PRODUCT_SPECIALS = 3
"""PAD, UNK and MASK come first in the product vocabulary, so padding with zeros pads with PAD."""
STORE_UNK = CUSTOMER_UNK = 0
BASKET_TABLE_COLUMNS = (
    "customer_row", "store_row", "week_index", "shop_date", "weekday", "hour", "history_baskets", "split",
    *TRIP_ATTRIBUTE_SLOTS,
)  # fmt: skip
"""Integer columns of ``basket_table.npy``; ``shop_date`` is yyyymmdd, ``split`` 0/1/2 = train/validation/test."""
BASKET_COLUMN = {name: i for i, name in enumerate(BASKET_TABLE_COLUMNS)}
"""Column position in ``basket_table.npy`` by name."""
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
AFFINITY_STORE_OPERATIONAL = 8
"""Store operational features averaged into a customer's affinity block (the first 8 of the 32)."""
MASK_SEED = 20061
CHUNK_ROWS = 1 << 20


def _index(path: Path, column: str) -> pd.Series:
    """code -> matrix row, from a ``*_index.parquet``."""
    table = pq.read_table(path, columns=[column, "row"]).to_pandas()
    return pd.Series(table["row"].to_numpy(), index=table[column])


def _product_matrix(embeddings: np.ndarray) -> np.ndarray:
    mean = embeddings.mean(axis=0) if len(embeddings) else np.zeros(embeddings.shape[1])
    mask = np.random.default_rng(MASK_SEED).standard_normal(embeddings.shape[1])
    norm = float(np.linalg.norm(embeddings, axis=1).mean()) if len(embeddings) else 1.0
    mask *= norm / np.linalg.norm(mask)
    return np.vstack([np.zeros_like(mean), mean, mask, embeddings]).astype(np.float32)


def _segment_prior(static: np.ndarray, history: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per customer, the weight-averaged history of the customers sharing its segment one-hots."""
    segments = static[:, 2:CUSTOMER_STATIC_SLOTS]
    _, group = np.unique(segments, axis=0, return_inverse=True)
    group = group.ravel()
    total = np.bincount(group, weights=weight)
    sums = np.zeros((total.size, history.shape[1]))
    np.add.at(sums, group, history * weight[:, None])
    overall = (history * weight[:, None]).sum(axis=0) / max(weight.sum(), 1e-12)
    means = np.where(total[:, None] > 0, sums / np.maximum(total, 1e-12)[:, None], overall)
    return means[group]


def _affinity_block(codes: pd.Index, ctx: StageContext, store_rows: pd.Series, stores: np.ndarray) -> np.ndarray:
    """[customers, 32]: the affinity block of T1 (module docstring)."""
    affinity = pd.read_parquet(ctx.artifact("processed", AFFINITY)).set_index("CUST_CODE").reindex(codes)
    visits = pd.read_parquet(ctx.artifact("processed", VISITS))
    customer = codes.get_indexer(visits["CUST_CODE"])
    store = store_rows.reindex(visits["STORE_CODE"]).to_numpy()
    share = visits["share"].to_numpy(np.float64)
    keep = (customer >= 0) & ~np.isnan(store)
    customer, store, share, rank = customer[keep], store[keep].astype(np.int64), share[keep], visits["rank"].to_numpy()[keep]
    n = len(codes)
    top = np.zeros((n, 3))
    for r in (1, 2, 3):
        at = rank == r
        top[customer[at], r - 1] = share[at]
    entropy = np.zeros(n)
    np.add.at(entropy, customer, -share * np.log(np.maximum(share, 1e-12)))
    weighted = np.zeros((n, 16 + AFFINITY_STORE_OPERATIONAL))
    store_part = np.concatenate([stores[:, :16], stores[:, 48 : 48 + AFFINITY_STORE_OPERATIONAL]], axis=1)
    np.add.at(weighted, customer, share[:, None] * store_part[store])
    log_stores = np.log1p(affinity["stores_visited"].to_numpy(np.float64))
    log_stores = (log_stores - log_stores.mean()) / (log_stores.std() or 1.0)
    trips = affinity["trips"].to_numpy(np.float64)
    numeric = np.stack(
        [
            affinity["loyalty"].to_numpy(np.float64),
            affinity["switching_frequency"].to_numpy(np.float64),
            log_stores,
            *top.T,
            entropy / np.log(10),
            np.minimum(1.0, trips / COLD_START_TRIPS),
        ],
        axis=1,
    )
    return np.nan_to_num(np.concatenate([numeric, weighted], axis=1))


def _customer_matrix(ctx: StageContext, store_rows: pd.Series, stores: np.ndarray) -> tuple[np.ndarray, pd.Index]:
    features = np.load(ctx.artifact("features", CUSTOMER_MATRIX)).astype(np.float64)
    codes = pd.Index(_index(ctx.artifact("features", CUSTOMER_INDEX), "CUST_CODE").sort_values().index)
    static, history = features[:, :CUSTOMER_STATIC_SLOTS], features[:, CUSTOMER_STATIC_SLOTS:]
    weight = static[:, 1]  # cold_start_weight = min(1, trips / 20), see entity_features
    blended = weight[:, None] * history + (1 - weight[:, None]) * _segment_prior(static, history, weight)
    affinity = _affinity_block(codes, ctx, store_rows, stores[1:])
    prior = (history * weight[:, None]).sum(axis=0) / max(weight.sum(), 1e-12)
    unk = np.concatenate([np.zeros(CUSTOMER_STATIC_SLOTS), prior, affinity.mean(axis=0)])
    matrix = np.vstack([unk, np.concatenate([static, blended, affinity], axis=1)]).astype(np.float32)
    assert matrix.shape[1] == T1_DIM, matrix.shape
    return matrix, codes


def _code_books(con) -> dict[str, list[str]]:
    """Training values of each trip attribute in code order (the order mission patterns use)."""
    return {a: training_vocabulary(con, a, "train_transactions", slots, "T6 trip block") for a, slots in TRIP_ATTRIBUTE_SLOTS.items()}


def _trip_patterns(ctx: StageContext, codes: pd.Index, books: dict[str, list[str]]) -> np.ndarray:
    missions = pd.read_parquet(ctx.artifact("processed", MISSIONS)).set_index("CUST_CODE").reindex(codes)
    distributions = {}
    for attribute, book in books.items():
        prefix = MISSION_ATTRIBUTES[attribute]
        columns = [f"{prefix}__{column_slug(v)}" for v in book]
        distributions[attribute] = missions.reindex(columns=columns).fillna(0).to_numpy(np.float64)
    patterns = trip_features(distributions)
    return np.vstack([patterns.mean(axis=0, keepdims=True) if len(patterns) else patterns[:1], patterns])


def _write_baskets(ctx: StageContext, con, books: dict[str, list[str]]) -> dict[str, int]:
    """basket_table / offsets / items / item prices, streamed from DuckDB into memory maps."""
    baskets_path = sql_string(ctx.artifact("prepared", BASKETS))
    con.execute(f"CREATE TEMP TABLE product_vocab AS SELECT PROD_CODE, row + {PRODUCT_SPECIALS} AS vocab_row FROM read_parquet({sql_string(ctx.artifact('features', EMBEDDING_INDEX_FILE))})")
    con.execute(f"CREATE TEMP TABLE store_vocab AS SELECT STORE_CODE, row + 1 AS vocab_row FROM read_parquet({sql_string(ctx.artifact('features', STORE_INDEX))})")
    con.execute(f"CREATE TEMP TABLE customer_vocab AS SELECT CUST_CODE, row + 1 AS vocab_row FROM read_parquet({sql_string(ctx.artifact('features', CUSTOMER_INDEX))})")
    book_sql = []
    for attribute, book in books.items():
        cases = " ".join(f"WHEN {sql_string(v)} THEN {i}" for i, v in enumerate(book))
        book_sql.append(f"CASE b.{attribute} {cases} ELSE -1 END" if book else "-1")
    split_sql = " ".join(f"WHEN '{s}' THEN {c}" for s, c in SPLIT_CODES.items())
    table_sql = f"""
        SELECT coalesce(c.vocab_row, {CUSTOMER_UNK}), coalesce(s.vocab_row, {STORE_UNK}), b.week_index, CAST(strftime(b.SHOP_DATE, '%Y%m%d') AS INTEGER),
               b.weekday, b.hour, b.history_baskets, CASE b.split {split_sql} END, {", ".join(book_sql)}, b.n_products
        FROM read_parquet({baskets_path}) b
        LEFT JOIN customer_vocab c USING (CUST_CODE) LEFT JOIN store_vocab s USING (STORE_CODE)
        ORDER BY b.basket_row"""
    (n_baskets,) = con.execute(f"SELECT count(*) FROM read_parquet({baskets_path})").fetchall()[0]
    counts = np.zeros(n_baskets, dtype=np.int64)
    with _NpyWriter(ctx.out / BASKET_TABLE, np.int32, (n_baskets, len(BASKET_TABLE_COLUMNS))) as table:

        def fill_table(start: int, block: np.ndarray) -> None:
            table.append(block[:, :-1])
            counts[start : start + len(block)] = block[:, -1]

        _stream(con, table_sql, fill_table)
    offsets = np.zeros(n_baskets + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    np.save(ctx.out / BASKET_OFFSETS, offsets)

    con.execute(
        f"""CREATE TEMP TABLE item_keys AS
            SELECT DISTINCT b.basket_row, t.PROD_CODE, b.STORE_CODE, b.week_index
            FROM read_parquet({baskets_path}) b
            JOIN (SELECT CUST_CODE, BASKET_ID, PROD_CODE FROM transactions WHERE CUST_CODE IS NOT NULL) t
              USING (CUST_CODE, BASKET_ID)"""
    )
    n_items = int(offsets[-1])
    (found,) = con.execute("SELECT count(*) FROM item_keys").fetchall()[0]
    if found != n_items:
        raise RuntimeError(f"{BASKETS}: n_products sums to {n_items} but the transactions hold {found} basket items")
    priced = price_inputs_sql("item_keys", f"read_parquet({sql_string(ctx.artifact('processed', PRICES))})")
    items_sql = f"""SELECT coalesce(v.vocab_row, {UNK}) AS vocab_row, {", ".join(f"p.{c}" for c in RAW_PRICE_COLUMNS)}
                    FROM ({priced}) p LEFT JOIN product_vocab v USING (PROD_CODE)
                    ORDER BY p.basket_row, p.PROD_CODE"""
    with (
        _NpyWriter(ctx.out / BASKET_ITEMS, np.int32, (n_items,)) as items,
        _NpyWriter(ctx.out / BASKET_ITEM_PRICES, np.float32, (n_items, len(RAW_PRICE_COLUMNS))) as prices,
    ):

        def fill_items(start: int, block: np.ndarray) -> None:
            items.append(block[:, 0])
            prices.append(block[:, 1:])

        _stream(con, items_sql, fill_items)
    return {BASKET_TABLE: n_baskets, BASKET_OFFSETS: n_baskets + 1, BASKET_ITEMS: n_items, BASKET_ITEM_PRICES: n_items}


class _NpyWriter:
    """Writes a ``.npy`` of known shape block by block with plain file appends. (A writable memory map
    would do it too, but its dirty pages count as resident memory until flushed: on a 30M-row market
    that was ~0.9 GB on top of DuckDB's limit.)"""

    def __init__(self, path: Path, dtype, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape, self.rows = path, np.dtype(dtype), shape, 0

    def __enter__(self) -> "_NpyWriter":
        self.handle = open(self.path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self.handle, header)
        return self

    def append(self, block: np.ndarray) -> None:
        self.handle.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.rows += len(block)

    def __exit__(self, *exc) -> None:
        self.handle.close()
        if exc[0] is None and self.rows != self.shape[0]:
            raise RuntimeError(f"{self.path.name}: wrote {self.rows} rows, expected {self.shape[0]}")


def _stream(con, sql: str, sink) -> None:
    """Feed ``sink(start_row, float64 block)`` the query's rows in order, a chunk at a time. (The
    connection must hold no half-read result: DuckDB 2 refuses new work on it, hence ``fetchall`` above.)"""
    reader = con.sql(sql).to_arrow_reader(CHUNK_ROWS)
    start = 0
    for batch in reader:
        block = np.column_stack([c.to_numpy(zero_copy_only=False).astype(np.float64) for c in batch.columns])
        sink(start, block)
        start += len(block)


def build_tensor_cache(ctx: StageContext) -> dict[str, int]:
    embeddings = np.load(ctx.artifact("features", EMBEDDINGS_FILE))
    product_codes = pd.Index(pq.read_table(ctx.artifact("features", EMBEDDING_INDEX_FILE)).column("PROD_CODE").to_pylist())
    products = _product_matrix(embeddings)
    np.save(ctx.out / PRODUCTS, products)

    store_features = np.load(ctx.artifact("features", STORE_MATRIX))
    store_rows = _index(ctx.artifact("features", STORE_INDEX), "STORE_CODE")
    mean_store = store_features.mean(axis=0, keepdims=True) if len(store_features) else np.zeros((1, store_features.shape[1]))
    stores = np.vstack([mean_store, store_features]).astype(np.float32)
    np.save(ctx.out / STORES, stores)

    customers, customer_codes = _customer_matrix(ctx, store_rows, stores)
    np.save(ctx.out / CUSTOMERS, customers)

    con = ctx.connect()
    books = _code_books(con)
    np.save(ctx.out / TRIP_PATTERNS, _trip_patterns(ctx, customer_codes, books))
    rows = _write_baskets(ctx, con, books)
    con.close()

    vocab = {
        "products": {"special": {"PAD": PAD, "UNK": UNK, "MASK": MASK}, "codes": product_codes.tolist(), "first_row": PRODUCT_SPECIALS},
        "stores": {"special": {"UNK": STORE_UNK}, "codes": store_rows.sort_values().index.tolist(), "first_row": 1},
        "customers": {"special": {"UNK": CUSTOMER_UNK}, "codes": customer_codes.tolist(), "first_row": 1},
        "trip_code_books": books,
        "basket_table_columns": list(BASKET_TABLE_COLUMNS),
        "raw_price_columns": list(RAW_PRICE_COLUMNS),
        "split": {"train_end": ctx.config.train_end, "valid_end": ctx.config.valid_end},
        "shapes": {PRODUCTS: list(products.shape), STORES: list(stores.shape), CUSTOMERS: list(customers.shape)},
    }
    (ctx.out / VOCAB).write_text(json.dumps(vocab) + "\n")
    return {
        PRODUCTS: len(products), STORES: len(stores), CUSTOMERS: len(customers), TRIP_PATTERNS: len(customers),
        VOCAB: len(product_codes), **rows,
    }  # fmt: skip


TENSOR_CACHE = Stage(
    name="tensor_cache",
    section="prepared",
    outputs=(VOCAB, PRODUCTS, STORES, CUSTOMERS, TRIP_PATTERNS, BASKET_TABLE, BASKET_OFFSETS, BASKET_ITEMS, BASKET_ITEM_PRICES),
    run=build_tensor_cache,
    depends_on=("samples", "product_embeddings", "store_features", "customer_features", "price_features",
                "store_affinity", "mission_patterns", "prices"),
)  # fmt: skip
