"""features/: store (96) and customer (160) matrices, checked against plain Python on the small market."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.world_model.pipeline.conftest import SPLIT, truncate_ingested
from world_model.data.dataset import read_transactions
from world_model.errors import RetailSimError
from world_model.pipeline.entity_features import (
    COLD_START_TRIPS,
    CUSTOMER_DIM,
    STORE_DIM,
    training_vocabulary,
    store_identity,
)
from world_model.pipeline.runner import run_pipeline
from world_model.pipeline.stages import ALL_STAGES

FEATURE_STAGES = ["store_features", "customer_features"]


def _build(ingested: Path, workdir: Path) -> Path:
    run_pipeline(ingested, workdir, ALL_STAGES, SPLIT, only=FEATURE_STAGES)
    return workdir


def _load(workdir: Path, entity: str) -> tuple[np.ndarray, list[str], dict]:
    features = workdir / "features"
    matrix = np.load(features / f"{entity}_features.npy")
    index = pq.read_table(features / f"{entity}_index.parquet").to_pydict()
    assert index["row"] == list(range(len(matrix)))
    names = json.loads((features / f"{entity}_feature_names.json").read_text())
    return matrix, index["STORE_CODE" if entity == "store" else "CUST_CODE"], names


def _column(names: dict, name: str) -> int:
    return [c["name"] for c in names["columns"]].index(name)


def _raw(matrix: np.ndarray, names: dict, name: str) -> np.ndarray:
    """A standardized column back in its raw unit."""
    norm = names["normalizers"][name]
    return matrix[:, _column(names, name)].astype(np.float64) * (norm["std"] or 1.0) + norm["mean"]


@pytest.fixture(scope="module")
def workdir(ingested_market: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(ingested_market, tmp_path_factory.mktemp("features-work"))


@pytest.fixture(scope="module")
def train_rows(ingested_market: Path) -> list[dict]:
    rows = read_transactions(ingested_market).to_pylist()
    weeks = sorted({r["SHOP_WEEK"] for r in rows})  # no missing weeks in a generated market
    return [dict(r, week_index=weeks.index(r["SHOP_WEEK"]) + 1) for r in rows if weeks.index(r["SHOP_WEEK"]) < SPLIT.train_end]


def test_shapes_index_and_names(workdir: Path, train_rows: list[dict]) -> None:
    for entity, dim, codes_expected in (
        ("store", STORE_DIM, {r["STORE_CODE"] for r in train_rows}),
        ("customer", CUSTOMER_DIM, {r["CUST_CODE"] for r in train_rows if r["CUST_CODE"] is not None}),
    ):
        matrix, codes, names = _load(workdir, entity)
        assert matrix.dtype == np.float32 and matrix.shape == (len(codes_expected), dim)
        assert np.isfinite(matrix).all()
        assert codes == sorted(codes_expected)
        assert names["shape"] == [len(codes), dim] and len(names["columns"]) == dim
        assert [b["start"] for b in names["blocks"]] == [0] + [b["stop"] for b in names["blocks"][:-1]]
        assert names["blocks"][-1]["stop"] == dim
        padding = [i for i, c in enumerate(names["columns"]) if c["scaling"] == "padding"]
        assert not matrix[:, padding].any()
    _, _, store_names = _load(workdir, "store")
    assert [(b["name"], b["stop"] - b["start"]) for b in store_names["blocks"]] == [
        ("format", 16), ("region", 32), ("operational", 32), ("identity", 16)
    ]
    _, _, customer_names = _load(workdir, "customer")
    assert [(b["name"], b["stop"] - b["start"]) for b in customer_names["blocks"]] == [("static", 64), ("history", 96)]


def test_one_hots_and_shares_sum_to_one(workdir: Path) -> None:
    stores, _, names = _load(workdir, "store")
    for prefix in ("STORE_FORMAT=", "STORE_REGION="):
        columns = [i for i, c in enumerate(names["columns"]) if c["name"].startswith(prefix)]
        assert columns and np.array_equal(stores[:, columns].sum(1), np.ones(len(stores)))
    customers, _, names = _load(workdir, "customer")
    groups = defaultdict(list)
    for i, c in enumerate(names["columns"]):
        if c["scaling"] == "one-hot":
            groups[c["name"].split("=")[0]].append(i)
        elif c["name"].startswith(("weekday_share_", "day_part_share_", "division_spend_share_D")):
            groups[c["name"].split("_share_")[0]].append(i)
        elif c["name"].startswith("mission_pattern_") and "unused" not in c["name"]:
            groups[c["name"].split("__")[0]].append(i)
    assert {"seg_1", "seg_2", "weekday", "day_part", "division_spend", "mission_pattern_mission"} <= set(groups)
    for group, columns in groups.items():
        np.testing.assert_allclose(customers[:, columns].sum(1), 1.0, atol=1e-5, err_msg=group)


def test_store_values_match_a_direct_count(workdir: Path, train_rows: list[dict]) -> None:
    matrix, codes, names = _load(workdir, "store")
    baskets = defaultdict(set)
    for r in train_rows:
        baskets[r["STORE_CODE"]].add(r["BASKET_ID"])
    weeks = len({r["week_index"] for r in train_rows})
    expected = [math.log1p(len(baskets[c]) / weeks) for c in codes]
    np.testing.assert_allclose(_raw(matrix, names, "log_baskets_per_week"), expected, rtol=1e-5)
    identity = matrix[:, [i for i, c in enumerate(names["columns"]) if c["block"] == "identity"]]
    np.testing.assert_allclose(identity, np.stack([store_identity(c) for c in codes]), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(identity, axis=1), 1.0, rtol=1e-6)
    assert len({tuple(row) for row in identity}) == len(codes)


def test_customer_values_match_a_direct_count(workdir: Path, train_rows: list[dict]) -> None:
    matrix, codes, names = _load(workdir, "customer")
    trips = defaultdict(dict)
    for r in train_rows:
        if r["CUST_CODE"] is not None:
            trips[r["CUST_CODE"]][r["BASKET_ID"]] = r
    data_weeks = sorted({r["week_index"] for r in train_rows})
    for row, code in enumerate(codes):
        stores = Counter(t["STORE_CODE"] for t in trips[code].values())
        n = sum(stores.values())
        first = min(t["week_index"] for t in trips[code].values())
        assert matrix[row, _column(names, "cold_start_weight")] == pytest.approx(min(1.0, n / COLD_START_TRIPS), abs=1e-7)
        assert matrix[row, _column(names, "loyalty")] == pytest.approx(max(stores.values()) / n, abs=1e-6)
        visit_rate = n / sum(1 for w in data_weeks if w >= first)
        assert _raw(matrix[row : row + 1], names, "visit_rate")[0] == pytest.approx(visit_rate, rel=1e-5)


def test_runs_are_deterministic(ingested_market: Path, workdir: Path, tmp_path: Path) -> None:
    again = _build(ingested_market, tmp_path / "again")
    for entity in ("store", "customer"):
        first, second = _load(workdir, entity), _load(again, entity)
        assert first[1] == second[1] and first[2]["columns"] == second[2]["columns"]
        np.testing.assert_allclose(first[0], second[0], rtol=1e-6, atol=1e-6)


def test_nothing_fitted_sees_weeks_after_training(ingested_market: Path, workdir: Path, tmp_path: Path) -> None:
    last_train_week = sorted(int(p.name) for p in (ingested_market / "transactions").iterdir())[SPLIT.train_end - 1]
    truncated = truncate_ingested(ingested_market, tmp_path / "truncated", last_train_week)
    cut = _build(truncated, tmp_path / "work")
    for entity in ("store", "customer"):
        full, short = _load(workdir, entity), _load(cut, entity)
        assert full[1] == short[1]
        assert (full[2]["columns"], full[2]["blocks"]) == (short[2]["columns"], short[2]["blocks"])
        # Sums in parallel aggregates may differ in the last bit; float32 hides nearly all of it.
        np.testing.assert_allclose(full[0], short[0], rtol=1e-5, atol=1e-6, err_msg=entity)


def test_a_vocabulary_larger_than_its_block_is_an_error() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 'F' || i::VARCHAR AS STORE_FORMAT FROM range(17) r(i)")
    with pytest.raises(RetailSimError, match="room for 16"):
        training_vocabulary(con, "STORE_FORMAT", "t", 16, "store format block")
    assert len(training_vocabulary(con, "STORE_FORMAT", "t", 17, "store format block")) == 17
