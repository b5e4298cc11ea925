"""Generator and ingest together: injected defects are quarantined exactly; defaults match the real facts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from world_model.data.facts import SCALE_FREE_FACTS, compare_to_real, compute_facts
from world_model.data.ingest import IngestConfig, ingest
from world_model.data.schema import Reason
from world_model.data.synthetic import MarketConfig, generate_market


def test_injected_defects_are_quarantined_with_the_right_reason_file_and_line(tmp_path: Path) -> None:
    config = MarketConfig(customers=300, products=80, stores=4, weeks=3, seed=5)
    generate_market(config, tmp_path / "raw", dirty_rate=0.1, progress=False)
    truth = tmp_path / "raw" / "ground_truth"
    injected = json.loads((truth / "defects.json").read_text())["total"]
    report = ingest(tmp_path / "raw", tmp_path / "out", IngestConfig(progress=False, workers=2))

    assert report["quarantine_reasons"] == {r: n for r, n in injected.items() if n}
    assert set(report["quarantine_reasons"]) == set(Reason.ALL)  # every reason exercised
    assert report["basket_ids_reconstructed"] is False
    positions = pq.read_table(truth / "defects.parquet").to_pylist()
    expected = {(f"transactions_{p['SHOP_WEEK']}.csv", p["row"] + 2, p["reason"]) for p in positions}
    quarantined = {
        (Path(r["source_file"]).name, r["line"], r["reason"])
        for r in pq.read_table(tmp_path / "out" / "quarantine.parquet").to_pylist()
    }
    assert quarantined == expected
    assert report["rows_read"] == report["rows_accepted"] + report["rows_quarantined"]


def test_parquet_market_ingests_like_csv(tmp_path: Path) -> None:
    config = MarketConfig(customers=120, products=60, stores=3, weeks=2, seed=2)
    generate_market(config, tmp_path / "csv", progress=False)
    generate_market(config, tmp_path / "pq", fmt="parquet", progress=False)
    a = ingest(tmp_path / "csv", tmp_path / "a", IngestConfig(progress=False, workers=1))
    b = ingest(tmp_path / "pq", tmp_path / "b", IngestConfig(progress=False, workers=1))
    for key in ("rows_accepted", "baskets", "customers", "products", "stores", "anonymous_rows"):
        assert a[key] == b[key]


@pytest.fixture(scope="module")
def default_market_facts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Facts of the market at its default parameters (about 2.6M rows; ~25 s on 2 cores)."""
    root = tmp_path_factory.mktemp("default-market")
    generate_market(MarketConfig(), root / "raw", progress=False)
    ingest(root / "raw", root / "ingested", IngestConfig(progress=False))
    return compute_facts(root / "ingested")


def test_default_market_reproduces_every_real_fact_within_25_percent(default_market_facts: dict) -> None:
    for row in compare_to_real(default_market_facts):
        assert abs(row["relative_error"]) <= 0.25, row
    assert (default_market_facts["first_hour"], default_market_facts["last_hour"]) == (8, 21)
    assert default_market_facts["weekday_max_min_ratio"] < 1.1


def test_another_seed_and_size_keeps_the_scale_free_facts(default_market_facts: dict, tmp_path: Path) -> None:
    config = dataclasses.replace(MarketConfig(), customers=600, seed=11)
    generate_market(config, tmp_path / "raw", progress=False)
    ingest(tmp_path / "raw", tmp_path / "ingested", IngestConfig(progress=False))
    facts = compute_facts(tmp_path / "ingested")
    for row in compare_to_real(facts, SCALE_FREE_FACTS):
        assert abs(row["relative_error"]) <= 0.25, row
    assert facts["rows"] != default_market_facts["rows"]
