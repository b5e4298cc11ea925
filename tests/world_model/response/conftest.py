"""The response tests' work directories: the shared tiny prepared market (with its price_response stage
run) and a market with enough price variation to measure recovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.world_model.pipeline.conftest import SPLIT
from world_model.data.ingest import IngestConfig, ingest
from world_model.data.synthetic import MarketConfig, generate_market
from world_model.pipeline.config import PipelineConfig
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.runner import run_pipeline
from world_model.pipeline.stages import ALL_STAGES

RECOVERY_MARKET = MarketConfig(customers=3000, products=300, stores=24, weeks=40, seed=3)


@pytest.fixture(scope="session")
def prepared_with_response(prepared: PreparedData) -> PreparedData:
    run_pipeline(prepared.workdir.parent / "ingested", prepared.workdir, ALL_STAGES, SPLIT, only=["price_response"])
    return prepared


@pytest.fixture(scope="session")
def recovery_market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("recovery-market")
    generate_market(RECOVERY_MARKET, root / "raw", progress=False)
    ingest(root / "raw", root / "ingested", IngestConfig(progress=False, workers=1))
    config = PipelineConfig(train_end=36, valid_end=38, progress=False)
    run_pipeline(root / "ingested", root / "work", ALL_STAGES, config, only=["price_response"])
    return root
