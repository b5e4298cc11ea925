"""prepared/ tensor cache: shapes of T1/T2/T5, special rows, basket arrays against the raw rows, no leakage."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.world_model.pipeline.conftest import SPLIT, truncate_ingested
from world_model.data.dataset import read_transactions
from world_model.pipeline.model_inputs import T1_DIM, T2_DIM, T5_DIM, T6_DIM
from world_model.pipeline.runner import run_pipeline
from world_model.pipeline.stages import ALL_STAGES
from world_model.pipeline.tensor_cache import BASKET_TABLE_COLUMNS, MASK, PAD, PRODUCT_SPECIALS, UNK

FITTED = ("products.npy", "stores.npy", "customers.npy", "customer_trip_patterns.npy")


def _build(ingested: Path, workdir: Path) -> Path:
    run_pipeline(ingested, workdir, ALL_STAGES, SPLIT, only=["tensor_cache"])
    return workdir


@pytest.fixture(scope="module")
def workdir(ingested_market: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(ingested_market, tmp_path_factory.mktemp("tensor-cache"))


def _load(workdir: Path, name: str) -> np.ndarray:
    return np.load(workdir / "prepared" / name, mmap_mode="r")


def test_matrix_shapes_and_special_rows(workdir: Path) -> None:
    vocab = json.loads((workdir / "prepared" / "vocab.json").read_text())
    embeddings = np.load(workdir / "features" / "product_embeddings.npy")
    products = _load(workdir, "products.npy")
    n_products, n_stores, n_customers = (len(vocab[k]["codes"]) for k in ("products", "stores", "customers"))
    assert products.shape == (n_products + 3, T2_DIM) and products.dtype == np.float32
    assert _load(workdir, "stores.npy").shape == (n_stores + 1, T5_DIM)
    assert _load(workdir, "customers.npy").shape == (n_customers + 1, T1_DIM)
    assert _load(workdir, "customer_trip_patterns.npy").shape == (n_customers + 1, T6_DIM)
    assert not products[PAD].any()
    np.testing.assert_allclose(products[UNK], embeddings.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(products[PRODUCT_SPECIALS:], embeddings)
    assert np.linalg.norm(products[MASK]) > 0
    index = pq.read_table(workdir / "features" / "product_embedding_index.parquet").to_pydict()
    assert vocab["products"]["codes"] == index["PROD_CODE"]
    stores = np.load(workdir / "features" / "store_features.npy")
    np.testing.assert_array_equal(_load(workdir, "stores.npy")[1:], stores)
    for name in FITTED:
        assert np.isfinite(_load(workdir, name)).all(), name


def test_customer_history_is_blended_toward_the_segment_by_trips(workdir: Path) -> None:
    features = np.load(workdir / "features" / "customer_features.npy")
    t1 = _load(workdir, "customers.npy")[1:]
    np.testing.assert_array_equal(t1[:, :64], features[:, :64])
    weight = features[:, 1].astype(np.float64)  # min(1, trips / 20)
    history = features[:, 64:160].astype(np.float64)
    segment = [tuple(row) for row in features[:, 2:64]]
    groups = defaultdict(list)
    for i, key in enumerate(segment):
        groups[key].append(i)
    expected = np.empty_like(history)
    for members in groups.values():
        w = weight[members]
        prior = (history[members] * w[:, None]).sum(axis=0) / w.sum()
        expected[members] = w[:, None] * history[members] + (1 - w[:, None]) * prior
    np.testing.assert_allclose(t1[:, 64:160], expected, rtol=1e-5, atol=1e-5)
    assert (weight == 1).any() and (weight < 1).any()  # both kinds of customer are exercised
    loyalty = pd.read_parquet(workdir / "processed" / "customer_store_affinity.parquet")["loyalty"].to_numpy()
    np.testing.assert_allclose(t1[:, 160], loyalty, rtol=1e-6)


def test_baskets_hold_each_trip_distinct_products_and_their_prices(workdir: Path, ingested_market: Path) -> None:
    vocab = json.loads((workdir / "prepared" / "vocab.json").read_text())
    rows = read_transactions(ingested_market).to_pandas()
    rows = rows[rows["CUST_CODE"].notna()]
    expected = rows.groupby("BASKET_ID")["PROD_CODE"].apply(lambda s: sorted(set(s))).to_dict()
    baskets = pd.read_parquet(workdir / "prepared" / "baskets.parquet")
    offsets, items = _load(workdir, "basket_offsets.npy"), _load(workdir, "basket_items.npy")
    table, prices = _load(workdir, "basket_table.npy"), _load(workdir, "basket_item_prices.npy")
    assert len(offsets) == len(baskets) + 1 and offsets[-1] == len(items) == len(prices)
    assert table.shape == (len(baskets), len(BASKET_TABLE_COLUMNS))
    row_of = {code: i + 3 for i, code in enumerate(vocab["products"]["codes"])}
    store_row = {code: i + 1 for i, code in enumerate(vocab["stores"]["codes"])}
    derived = pd.read_parquet(workdir / "processed" / "prices_derived.parquet").set_index(["PROD_CODE", "STORE_CODE", "week_index"])
    for b in baskets.itertuples():
        codes = expected[b.BASKET_ID]
        got = items[offsets[b.basket_row] : offsets[b.basket_row + 1]].tolist()
        assert got == [row_of.get(c, UNK) for c in codes]
        assert table[b.basket_row, BASKET_TABLE_COLUMNS.index("store_row")] == store_row.get(b.STORE_CODE, 0)
        assert table[b.basket_row, BASKET_TABLE_COLUMNS.index("week_index")] == b.week_index
        assert table[b.basket_row, BASKET_TABLE_COLUMNS.index("shop_date")] == int(pd.Timestamp(b.SHOP_DATE).strftime("%Y%m%d"))
        for offset, code in enumerate(codes):
            key = (code, b.STORE_CODE, b.week_index)
            if key in derived.index:
                price = prices[offsets[b.basket_row] + offset]
                assert price[0] == pytest.approx(derived.loc[key, "actual_price"], rel=1e-6)
                assert price[5] == 1  # known pair
    assert len(baskets) > 100


def test_fitted_arrays_do_not_see_weeks_after_training(
    workdir: Path, ingested_market: Path, tmp_path: Path
) -> None:
    cut = truncate_ingested(ingested_market, tmp_path / "cut", _last_train_shop_week(workdir))
    truncated = _build(cut, tmp_path / "work")
    for name in FITTED:
        np.testing.assert_array_equal(_load(truncated, name), _load(workdir, name), err_msg=name)
    full, part = (json.loads((w / "prepared" / "vocab.json").read_text()) for w in (workdir, truncated))
    assert {k: full[k] for k in ("products", "stores", "customers", "trip_code_books")} == {
        k: part[k] for k in ("products", "stores", "customers", "trip_code_books")
    }


def _last_train_shop_week(workdir: Path) -> int:
    prices = pq.read_table(workdir / "processed" / "prices_derived.parquet", columns=["SHOP_WEEK", "split"]).to_pandas()
    return int(prices.loc[prices["split"] == "train", "SHOP_WEEK"].max())
