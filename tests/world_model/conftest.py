"""One tiny prepared work directory shared by the evaluation, model and training tests (the pipeline tests' market and split)."""

from __future__ import annotations


import pytest

from tests.world_model.pipeline.conftest import SMALL_MARKET, SPLIT
from world_model.data.ingest import IngestConfig, ingest
from world_model.data.synthetic import generate_market
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.runner import run_pipeline
from world_model.pipeline.stages import ALL_STAGES


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    root = tmp_path_factory.mktemp("evaluation-market")
    generate_market(SMALL_MARKET, root / "raw", progress=False)
    ingest(root / "raw", root / "ingested", IngestConfig(progress=False, workers=1))
    run_pipeline(root / "ingested", root / "work", ALL_STAGES, SPLIT, only=["tensor_cache"])
    return PreparedData(root / "work")
