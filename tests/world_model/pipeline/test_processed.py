"""processed/: co-purchase graph, basket quantities, store affinity and mission patterns, checked against
plain Python."""

from __future__ import annotations

import itertools
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.world_model.pipeline.conftest import SPLIT, truncate_ingested
from world_model.data.dataset import read_transactions, transaction_files
from world_model.pipeline.runner import run_pipeline
from world_model.pipeline.stages import ALL_STAGES

PROCESSED_STAGES = ["product_graph", "basket_quantities", "store_affinity", "mission_patterns"]


@pytest.fixture(scope="module")
def workdir(ingested_market: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pipeline-work")
    run_pipeline(ingested_market, out, ALL_STAGES, SPLIT, only=PROCESSED_STAGES)
    return out


@pytest.fixture(scope="module")
def train_rows(ingested_market: Path) -> list[dict]:
    rows = read_transactions(ingested_market).to_pylist()
    weeks = sorted({r["SHOP_WEEK"] for r in rows})  # no missing weeks in a generated market
    return [r for r in rows if weeks.index(r["SHOP_WEEK"]) < SPLIT.train_end]


def test_copurchase_edges_match_a_direct_count(workdir: Path, train_rows: list[dict]) -> None:
    baskets = defaultdict(set)
    for r in train_rows:
        baskets[r["BASKET_ID"]].add(r["PROD_CODE"])
    pairs = Counter(pair for items in baskets.values() for pair in itertools.permutations(sorted(items), 2))
    edges = pq.read_table(workdir / "processed" / "product_graph_edges.parquet").to_pylist()
    assert edges, "the small market should have co-purchase edges"
    for edge in edges:
        assert edge["baskets"] == pairs[(edge["src"], edge["dst"])] >= SPLIT.min_copurchase
    per_source = defaultdict(list)
    for edge in edges:
        per_source[edge["src"]].append(edge)
    for src, kept in per_source.items():
        assert len(kept) <= SPLIT.top_complements
        strongest = sorted((n for (a, _), n in pairs.items() if a == src and n >= SPLIT.min_copurchase), reverse=True)
        assert [e["baskets"] for e in kept] == strongest[: len(kept)]  # the strongest partners are kept, in order
    nodes = pq.read_table(workdir / "processed" / "product_graph_nodes.parquet").to_pylist()
    assert {n["PROD_CODE"] for n in nodes} == {r["PROD_CODE"] for r in train_rows}


def test_basket_quantities_match_a_direct_count(workdir: Path, train_rows: list[dict]) -> None:
    """Units of a product per basket holding it (its lines summed), counted per product and quantity,
    every basket included; per product the mean is the graph nodes' units per basket."""
    units = Counter()
    for r in train_rows:
        units[(r["PROD_CODE"], r["BASKET_ID"])] += r["QUANTITY"]
    expected = Counter((product, quantity) for (product, _), quantity in units.items())
    table = pd.read_parquet(workdir / "processed" / "basket_quantities.parquet")
    assert dict(zip(zip(table["PROD_CODE"], table["QUANTITY"]), table["baskets"])) == expected
    assert any(q > 1 for _, q in expected) and table["QUANTITY"].min() >= 1
    nodes = pd.read_parquet(workdir / "processed" / "product_graph_nodes.parquet").set_index("PROD_CODE")
    mean = (table["QUANTITY"] * table["baskets"]).groupby(table["PROD_CODE"]).sum() / table.groupby("PROD_CODE")["baskets"].sum()
    assert np.allclose(mean, (nodes["train_units"] / nodes["train_baskets"]).loc[mean.index])


def test_store_affinity_matches_a_direct_count(workdir: Path, train_rows: list[dict]) -> None:
    trips = {(r["CUST_CODE"], r["BASKET_ID"]): r for r in train_rows if r["CUST_CODE"] is not None}
    per_customer = defaultdict(Counter)
    for (customer, _), r in trips.items():
        per_customer[customer][r["STORE_CODE"]] += 1
    affinity = {r["CUST_CODE"]: r for r in pq.read_table(workdir / "processed" / "customer_store_affinity.parquet").to_pylist()}
    assert set(affinity) == set(per_customer)
    for customer, stores in per_customer.items():
        top = min(stores.items(), key=lambda kv: (-kv[1], kv[0]))
        row = affinity[customer]
        assert row["primary_store"] == top[0]
        assert row["loyalty"] == pytest.approx(top[1] / sum(stores.values()))
        assert row["stores_visited"] == len(stores) and row["trips"] == sum(stores.values())
        assert 0.0 <= row["switching_frequency"] <= 1.0
    visits = pq.read_table(workdir / "processed" / "customer_store_visits.parquet").to_pylist()
    assert sum(v["trips"] for v in visits) == len(trips)


def test_a_basket_whose_rows_disagree_takes_their_smallest_values(ingested_market: Path, tmp_path: Path) -> None:
    """A corrupt basket whose first line names another store is one trip, at the smallest store code of
    its lines, whatever order the lines are read in (as the samples' and features' trips take it)."""
    corrupt = shutil.copytree(ingested_market, tmp_path / "ingested")
    part = transaction_files(corrupt)[0]
    table = pq.read_table(part)
    rows = table.to_pylist()
    named = Counter(r["BASKET_ID"] for r in rows if r["CUST_CODE"] is not None)
    basket = next(b for b, lines in named.items() if lines > 1)
    first = next(i for i, r in enumerate(rows) if r["BASKET_ID"] == basket)
    customer, store = rows[first]["CUST_CODE"], rows[first]["STORE_CODE"]
    stores = table.column("STORE_CODE").to_pylist()
    stores[first] = "STORE99999"  # after every real code
    pq.write_table(table.set_column(table.schema.get_field_index("STORE_CODE"), "STORE_CODE",
                                    pa.array(stores, table.schema.field("STORE_CODE").type)), part)  # fmt: skip
    run_pipeline(corrupt, tmp_path / "work", ALL_STAGES, SPLIT, only=["store_affinity"])
    visits = pd.read_parquet(tmp_path / "work" / "processed" / "customer_store_visits.parquet")
    mine = visits[visits["CUST_CODE"] == customer].set_index("STORE_CODE")["trips"]
    assert "STORE99999" not in mine.index and mine.get(store, 0) > 0


def test_mission_shares_sum_to_one_per_attribute(workdir: Path) -> None:
    table = pq.read_table(workdir / "processed" / "customer_mission_patterns.parquet")
    for prefix in ("basket_type", "mission", "price_sensitivity", "basket_size"):
        columns = [c for c in table.column_names if c.startswith(prefix + "__")]
        assert columns
        for row in table.select(columns).to_pylist():
            assert sum(row.values()) == pytest.approx(1.0)
    assert " " not in "".join(table.column_names)


def test_nothing_fitted_sees_weeks_after_training(ingested_market: Path, workdir: Path, tmp_path: Path) -> None:
    last_train_week = sorted(int(p.name) for p in (ingested_market / "transactions").iterdir())[SPLIT.train_end - 1]
    truncated = truncate_ingested(ingested_market, tmp_path / "truncated", last_train_week)
    run_pipeline(truncated, tmp_path / "work", ALL_STAGES, SPLIT, only=PROCESSED_STAGES)
    for stage in ALL_STAGES:
        if stage.name in PROCESSED_STAGES:
            for name in stage.outputs:
                full = pq.read_table(workdir / stage.section / name).to_pandas()
                cut = pq.read_table(tmp_path / "work" / stage.section / name).to_pandas()
                # Sums in parallel aggregates may differ in the last bit; everything else must be identical.
                pd.testing.assert_frame_equal(full, cut, check_exact=False, rtol=1e-12, obj=name)
