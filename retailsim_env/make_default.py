"""Rebuild the default scenario shipped in ``retailsim_env/scenarios/default``.

    python -m retailsim_env.make_default [--work DIR] [--out retailsim_env/scenarios/default] [--models-from DIR]

Generates a small synthetic market (``DefaultScenarioConfig``), ingests it, runs the pipeline, trains the
store-visit and (small) basket models on a CPU and bundles the result with its ground truth, so the
shipped scenario supports both demand modes. Deterministic up to the models' floating-point training;
a few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from world_model.data.ingest import IngestConfig, ingest
from world_model.data.synthetic import MarketConfig, generate_market
from world_model.errors import RetailSimError
from world_model.models.basket import BasketModelConfig
from world_model.models.store_visit import StoreVisitConfig
from world_model.pipeline.config import PipelineConfig
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.runner import run_pipeline
from world_model.pipeline.stages import ALL_STAGES
from world_model.training.config import TrainConfig
from world_model.training.tasks import BasketTask, BasketTaskConfig, StoreVisitTask, StoreVisitTaskConfig, trip_classes
from world_model.training.trainer import train

from retailsim_env.scenario import FEATURE_FILES, MODELS, PREPARED_FILES, BuildConfig, build_scenario, default_scenario_path


@dataclass(frozen=True)
class DefaultScenarioConfig:
    """The shipped scenario's market and training: small enough for a few MB and a CPU. The training
    weeks (53 from 2006-04-10) cover a whole year, so the season index has every week of the year, the
    December peak included, from data; 480 customers (477 with a history) keep the 66 weeks' bundle under
    10 MiB (8.6 MB)."""

    customers: int = 480
    products: int = 200
    stores: int = 6
    weeks: int = 66
    seed: int = 0
    train_end: int = 53
    valid_end: int = 59
    store_visit_epochs: int = 3
    basket_epochs: int = 3


REBUILD_RTOL, REBUILD_ATOL = 1e-4, 1e-5
"""How far a rebuilt float may be from the shipped one. The product embeddings are trained in float32 by
torch, whose kernels differ by CPU (AVX2, AVX-512): one CPU's embeddings were 3e-6 from another's. Data
the models were not trained on differs in shape or by orders of magnitude more."""


def _same_content(a: Path, b: Path) -> bool:
    """Equal arrays, tables or JSON (by value: a library version may change a parquet file's bytes; NaN
    equal to NaN: the raw price inputs hold NaN for a price the week did not have; floats to
    ``REBUILD_RTOL`` / ``REBUILD_ATOL``)."""
    if not b.exists():
        return False
    if a.suffix == ".npy":
        x, y = np.load(a), np.load(b)
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if x.dtype.kind != "f":
            return np.array_equal(x, y)
        return np.allclose(x, y, rtol=REBUILD_RTOL, atol=REBUILD_ATOL, equal_nan=True)
    if a.suffix == ".parquet":
        try:
            pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b), rtol=REBUILD_RTOL, atol=REBUILD_ATOL)
        except AssertionError:
            return False
        return True
    if a.suffix == ".json":
        return json.loads(a.read_text()) == json.loads(b.read_text())
    return a.read_bytes() == b.read_bytes()


def _check_same_model_inputs(workdir: Path, scenario_dir: Path) -> None:
    """The rebuilt work directory's model inputs (tensor cache slice, price encoder) must be those the
    scenario's models were trained on, or the bundle would pair them with other data; nothing is written."""
    names = [f"prepared/{name}" for name in PREPARED_FILES] + [f"features/{name}" for name in FEATURE_FILES]
    differ = [name for name in names if not _same_content(workdir / name, scenario_dir / name)]
    if differ:
        raise RetailSimError(f"--models-from: {scenario_dir}'s models were trained on other data ({', '.join(differ[:3])} "
                             "differ from the rebuilt ones); rebuild without --models-from")  # fmt: skip


def make_default(work: Path, out: Path, config: DefaultScenarioConfig = DefaultScenarioConfig(),
                 progress: bool = True, models_from: Path | None = None) -> Path:  # fmt: skip
    """Run the chain in ``work`` and write the scenario to ``out``; with ``models_from`` (a scenario
    directory) its trained models are bundled instead of training new ones (the data side rebuilt alone:
    generation, ingest and pipeline are deterministic, training is not)."""
    market = MarketConfig(customers=config.customers, products=config.products, stores=config.stores,
                          weeks=config.weeks, seed=config.seed)  # fmt: skip
    generate_market(market, work / "raw", progress=progress, overwrite=True)
    ingest(work / "raw", work / "ingested", IngestConfig(overwrite=True, progress=progress))
    pipeline = PipelineConfig(train_end=config.train_end, valid_end=config.valid_end, progress=progress)
    run_pipeline(work / "ingested", work / "work", ALL_STAGES, pipeline)
    data = PreparedData(work / "work")
    if models_from is not None:
        _check_same_model_inputs(work / "work", Path(models_from))
        for kind, name in MODELS.items():  # copied first: ``out`` may be ``models_from``
            shutil.copyfile(Path(models_from) / name, work / f"{kind}.pt")
        return build_scenario(work / "work", work / "basket.pt", work / "store_visit.pt", out,
                              ground_truth=work / "raw" / "ground_truth", config=BuildConfig(name="default"),
                              overwrite=True)  # fmt: skip
    quiet = {"progress": progress, "seed": config.seed}
    store_task = StoreVisitTask(data, StoreVisitConfig(n_stores=data.n_stores), StoreVisitTaskConfig(seed=config.seed))
    train(store_task, TrainConfig(epochs=config.store_visit_epochs, **quiet), work / "store_visit")
    basket_config = BasketModelConfig.small(n_products=data.n_products, trip_classes=trip_classes(data))
    basket_task = BasketTask(data, basket_config, BasketTaskConfig(seed=config.seed), epochs=config.basket_epochs)
    train(basket_task, TrainConfig(epochs=config.basket_epochs, **quiet), work / "basket")
    return build_scenario(work / "work", work / "basket", work / "store_visit", out,
                          ground_truth=work / "raw" / "ground_truth", config=BuildConfig(name="default"),
                          overwrite=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="scratch directory (default: a temporary one)")
    parser.add_argument("--out", default=str(default_scenario_path()), help="scenario directory to write")
    parser.add_argument("--models-from", help="bundle this scenario directory's trained models instead of training "
                                              "(e.g. the shipped one: the data files rebuilt, the models kept)")  # fmt: skip
    args = parser.parse_args()
    models_from = Path(args.models_from) if args.models_from else None
    try:
        if args.work:
            print(make_default(Path(args.work), Path(args.out), models_from=models_from))
            return
        with tempfile.TemporaryDirectory() as work:
            print(make_default(Path(work), Path(args.out), models_from=models_from))
    except RetailSimError as error:
        raise SystemExit(f"make_default: error: {error}") from None


if __name__ == "__main__":
    main()
