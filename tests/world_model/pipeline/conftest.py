"""A small ingested market shared by the pipeline tests, and a way to cut it at the end of training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from world_model.data.ingest import IngestConfig, ingest
from world_model.data.synthetic import MarketConfig, generate_market
from world_model.pipeline.config import PipelineConfig

SMALL_MARKET = MarketConfig(customers=150, products=60, stores=4, weeks=12, seed=7)
SPLIT = PipelineConfig(train_end=8, valid_end=10, min_copurchase=3, progress=False)


@pytest.fixture(scope="session")
def ingested_market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline-market")
    generate_market(SMALL_MARKET, root / "raw", progress=False)
    ingest(root / "raw", root / "ingested", IngestConfig(progress=False, workers=1))
    return root / "ingested"


def truncate_ingested(ingested: Path, out: Path, last_week: int) -> Path:
    """A copy of an ingested directory holding only the weeks up to ``last_week``."""
    shutil.copytree(ingested, out, ignore=lambda d, names: [n for n in names if n.isdigit() and int(n) > last_week])
    report = json.loads((out / "ingest_report.json").read_text())
    report["last_week"] = last_week
    report["missing_weeks"] = [w for w in report["missing_weeks"] if w <= last_week]
    (out / "ingest_report.json").write_text(json.dumps(report))
    return out
