"""Trained world models as predictors: load a checkpoint, score targets in batches.

``load_world_model`` rebuilds a model from a checkpoint written by ``world_model.training.train`` (its
``model_config`` says which model and which sizes), on any device and either Mamba backend. The
predictor classes have the evaluation protocol's interface (``world_model.evaluation``): ``name`` and
``probabilities(targets)`` for store visits, ``name`` and ``rank(targets, k)`` for next baskets, so the
neural models are scored by the same code as the baselines.

The basket ranker takes the trip's store and context the way the simulator would: the store from a
store-visit predictor (its most likely store) and the customer's usual trip mix; ``store="true"`` and
``trip="true"`` give the variant fed the target's own store and trip attributes, reported separately.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from world_model.devices import resolve_device
from world_model.errors import RetailSimError
from world_model.models.basket import BasketModelConfig, BasketWorldModel, top_k_products
from world_model.models.batches import BatchBuilder, to_device
from world_model.models.store_visit import StoreVisitConfig, StoreVisitModel
from world_model.pipeline.loader import PreparedData
from world_model.training.checkpoint import load_checkpoint


MODEL_KINDS = {"basket": "a basket model trained with the next-basket objective", "store_visit": "a store-visit model"}
"""What each kind of world model a caller asks for must be (the simulator and the rankers read next
baskets, so a masked-objective basket model is not one)."""


def _checkpoint(path: Path | str, kind: str | None) -> tuple[Path, dict]:
    """(the checkpoint file, its contents), a one-line error when it is not a world model or not ``kind``."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    checkpoint = load_checkpoint(path)
    spec = checkpoint.get("model_config")
    if not spec or spec.get("kind") not in MODEL_KINDS:
        raise RetailSimError(f"{path}: not a world-model checkpoint (no basket or store_visit model_config)")
    masked = spec["kind"] == "basket" and spec["config"].get("objective", "next_basket") != "next_basket"
    if kind is not None and (spec["kind"] != kind or (kind == "basket" and masked)):
        found = "a masked-objective basket model" if masked else MODEL_KINDS[spec["kind"]]
        raise RetailSimError(f"{path}: {found}, where {MODEL_KINDS[kind]} is needed (--world-model takes the "
                             "basket model, --store-visit the store-visit model)")  # fmt: skip
    return path, checkpoint


def check_world_model(path: Path | str, kind: str, data: PreparedData | None = None) -> Path:
    """The checkpoint file of ``path`` when it holds a ``kind`` world model (``MODEL_KINDS``), else a
    one-line ``RetailSimError`` naming it; with ``data``, also when the model fits its vocabularies (built
    once on the CPU, not kept: ``scenario build`` copies the file)."""
    path, checkpoint = _checkpoint(path, kind)
    if data is not None:
        _build(path, checkpoint, data)
    return path


def load_world_model(path: Path | str, data: PreparedData, device: str = "auto", kind: str | None = None) -> nn.Module:
    """The model of a training checkpoint (``best.pt``, ``last.pt``, ``epoch-NNN.pt`` or a run directory,
    which means its ``best.pt``), in eval mode on ``device``; with ``kind`` ("basket" or "store_visit")
    another kind of model is a one-line error naming the file."""
    path, checkpoint = _checkpoint(path, kind)
    return _build(path, checkpoint, data).to(resolve_device(device)).eval()


def _build(path: Path, checkpoint: dict, data: PreparedData) -> nn.Module:
    """The checkpoint's model over ``data``'s vocabularies, its weights loaded (on the CPU)."""
    spec = checkpoint["model_config"]
    try:  # a config this version does not know (TypeError) or other vocabularies (ValueError, RuntimeError)
        if spec["kind"] == "basket":
            model = BasketWorldModel(BasketModelConfig.from_dict(spec["config"]), data.products, data.customers, data.stores)
        else:
            model = StoreVisitModel(StoreVisitConfig(**spec["config"]), data.products, data.customers, data.stores)
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, ValueError, TypeError) as error:
        raise RetailSimError(f"{path}: does not fit this work directory's vocabularies or this version's model "
                             f"({str(error).splitlines()[0]})") from None  # fmt: skip
    return model


class StoreVisitPredictor:
    """P(store | everything before the trip) [n, n_stores] from a ``StoreVisitModel``."""

    def __init__(self, model: StoreVisitModel, data: PreparedData, batch_size: int = 2048,
                 name: str = "store_visit_model") -> None:  # fmt: skip
        self.model, self.builder, self.batch_size, self.name = model, BatchBuilder(data), batch_size, name

    @torch.no_grad()
    def probabilities(self, targets) -> np.ndarray:
        """[n, n_stores]; the last result is kept, so a basket ranker that takes its stores from this
        predictor on the same targets (as ``retailsim evaluate`` does) does not score them again."""
        cached = getattr(self, "_last", None)
        if cached is not None and cached[0] is targets:
            return cached[1]
        device = next(self.model.parameters()).device
        parts = []
        for start in range(0, len(targets.rows), self.batch_size):
            batch = to_device(self.builder.store_visit(targets.rows[start : start + self.batch_size]), device)
            parts.append(torch.softmax(self.model(batch).float(), -1).cpu().numpy())
        result = np.concatenate(parts) if parts else np.zeros((0, self.builder.data.n_stores), np.float32)
        self._last = (targets, result)
        return result


class BasketRanker:
    """The top-k products [n, k] of a ``BasketWorldModel`` (next-basket objective) for each target.

    ``store``: a store predictor (its argmax store is the trip's store), or "true" for the target's own.
    ``trip``: "patterns" (the customer's usual mix) or "true" (the target's own attributes)."""

    def __init__(self, model: BasketWorldModel, data: PreparedData, store: StoreVisitPredictor | str = "true",
                 trip: str = "patterns", batch_size: int = 256, name: str = "world_model") -> None:  # fmt: skip
        if model.config.objective != "next_basket":
            raise RetailSimError("the basket ranker needs a model trained with the next-basket objective")
        if trip not in ("patterns", "true") or (isinstance(store, str) and store != "true"):
            raise ValueError(f"store must be a predictor or 'true', trip 'patterns' or 'true'; got {store!r}, {trip!r}")
        self.model, self.store, self.trip, self.batch_size, self.name = model, store, trip, batch_size, name
        self.builder = BatchBuilder(data, max_sequence_items=model.config.max_sequence_items)

    @torch.no_grad()
    def rank(self, targets, k: int = 20) -> np.ndarray:
        """Top-k products per target; the trip heads' predictions of the same pass are kept in
        ``trip_predictions`` (head name -> [n] code positions) for ``trip_head_accuracy``."""
        device = next(self.model.parameters()).device
        stores = None if self.store == "true" else self.store.probabilities(targets).argmax(1)
        parts, trips = [], {name: [] for name in self.model.trip_heads}
        for start in range(0, len(targets.rows), self.batch_size):
            rows = targets.rows[start : start + self.batch_size]
            store_rows = None if stores is None else stores[start : start + self.batch_size]
            batch = to_device(self.builder.next_basket(rows, store_rows=store_rows, true_trip=self.trip == "true"), device)
            out = self.model(batch)
            parts.append(top_k_products(out["logits"].float(), k).cpu().numpy())
            for name in trips:
                trips[name].append(out[name].argmax(1).cpu().numpy())
        self.trip_predictions = {name: np.concatenate(v) if v else np.zeros(0, np.int64) for name, v in trips.items()}
        return np.concatenate(parts) if parts else np.zeros((0, k), np.int64)

    def trip_head_accuracy(self, targets) -> dict[str, float]:
        """Accuracy of each trip head over the targets of the last ``rank`` call with a known label."""
        out = {}
        for name, predicted in self.trip_predictions.items():
            truth = self.builder.column(name, targets.rows)
            known = truth >= 0
            out[name] = float((predicted[known] == truth[known]).mean()) if known.any() else float("nan")
        return out
