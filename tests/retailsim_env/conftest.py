"""Scenarios for the environment tests: the shipped default, and one built here from the tiny prepared
market with untrained tiny models (the environments' guarantees hold for any propensities)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.world_model.conftest import prepared  # noqa: F401  (the shared tiny prepared market)
from tests.world_model.pipeline.conftest import SPLIT
from world_model.models.basket import BasketModelConfig, BasketWorldModel
from world_model.models.store_visit import StoreVisitConfig, StoreVisitModel
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.runner import run_pipeline
from world_model.pipeline.stages import ALL_STAGES
from world_model.training.checkpoint import CHECKPOINT_KEYS, FORMAT, save_checkpoint
from world_model.training.tasks import trip_classes

from retailsim_env.scenario import Scenario, build_scenario


def write_model_checkpoint(path: Path, model: torch.nn.Module, kind: str) -> Path:
    """A checkpoint in the trainer's format holding ``model``'s weights."""
    checkpoint = {key: {} for key in CHECKPOINT_KEYS}
    checkpoint.update(format=FORMAT, model=model.state_dict(), epoch=0, step=0, best_value=None, best_epoch=0,
                      epochs_without_improvement=0, history=[],
                      model_config={"kind": kind, "config": model.config.to_dict()})  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, checkpoint)
    return path


def tiny_basket(data: PreparedData, **overrides) -> BasketWorldModel:
    """An untrained tiny basket model of ``data`` (``overrides``: other ``BasketModelConfig`` fields)."""
    config = BasketModelConfig.small(n_products=data.n_products, trip_classes=trip_classes(data), d_model=32,
                                     n_heads=4, ffn=64, max_sequence_items=16, **overrides)  # fmt: skip
    return BasketWorldModel(config, data.products, data.customers, data.stores)


def tiny_models(data: PreparedData, out: Path, context_position: str = "encoder") -> tuple[Path, Path]:
    torch.manual_seed(0)
    basket = tiny_basket(data, context_position=context_position)
    store = StoreVisitModel(StoreVisitConfig(n_stores=data.n_stores, hidden=32), data.products, data.customers, data.stores)
    return write_model_checkpoint(out / "basket.pt", basket, "basket"), write_model_checkpoint(out / "sv.pt", store, "store_visit")


@pytest.fixture(scope="session")
def tiny_workdir(prepared: PreparedData) -> PreparedData:  # noqa: F811
    run_pipeline(prepared.workdir.parent / "ingested", prepared.workdir, ALL_STAGES, SPLIT, only=["price_response", "basket_quantities"])
    return prepared


@pytest.fixture(scope="session")
def tiny_scenario_dir(tiny_workdir: PreparedData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-scenario")
    basket, store = tiny_models(tiny_workdir, root / "models")
    return build_scenario(tiny_workdir.workdir, basket, store, root / "scenario",
                          ground_truth=tiny_workdir.workdir.parent / "raw" / "ground_truth")  # fmt: skip


@pytest.fixture(scope="session")
def tiny_cached_scenario_dir(tiny_workdir: PreparedData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny scenario with a basket model whose context follows the encoder (a history cache)."""
    root = tmp_path_factory.mktemp("tiny-cached-scenario")
    basket, store = tiny_models(tiny_workdir, root / "models", context_position="decoder")
    return build_scenario(tiny_workdir.workdir, basket, store, root / "scenario")


@pytest.fixture(scope="session")
def default_scenario() -> Scenario:
    return Scenario()
