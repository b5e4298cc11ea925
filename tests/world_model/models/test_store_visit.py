"""The store-visit predictor: shapes, the pointer head, class weights, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from world_model.models.batches import BatchBuilder
from world_model.models.store_visit import StoreVisitConfig, StoreVisitModel
from world_model.pipeline.loader import PreparedData


def _model(data: PreparedData, **overrides) -> StoreVisitModel:
    torch.manual_seed(0)
    return StoreVisitModel(StoreVisitConfig(n_stores=data.n_stores, hidden=32, **overrides), data.products,
                           data.customers, data.stores)  # fmt: skip


@pytest.fixture(scope="module")
def batch(prepared: PreparedData) -> dict[str, torch.Tensor]:
    table = np.asarray(prepared.basket_table)
    return BatchBuilder(prepared).store_visit(np.flatnonzero(table[:, 6] >= 1)[:64])


def test_logits_and_pointer_head(prepared, batch) -> None:
    model = _model(prepared).eval()
    logits = model(batch)
    assert logits.shape == (64, prepared.n_stores) and torch.isfinite(logits).all()
    # the pointer head moves only the customer's own stores
    no_history = dict(batch, store_candidates=torch.full_like(batch["store_candidates"], -1))
    changed = model(no_history) != logits
    own = torch.zeros_like(changed)
    for i, row in enumerate(batch["store_candidates"]):
        own[i, row[row >= 0]] = True
    assert changed.any() and not (changed & ~own).any()


def test_class_weights_follow_inverse_frequency(prepared) -> None:
    model = _model(prepared, class_weight_power=0.5)
    counts = np.array([0, 100, 25, 4, 1][: prepared.n_stores] + [0] * max(0, prepared.n_stores - 5))
    model.set_class_weights(counts)
    w = model.class_weights.numpy()
    assert w[1] < w[2] < w[3] < w[4]
    assert (w * counts).sum() / counts.sum() == pytest.approx(1.0, rel=1e-5)  # mean 1 over trips
    model.config.class_weight_power = 0.0
    model.set_class_weights(counts)
    assert np.allclose(model.class_weights.numpy(), 1.0)


def test_the_model_learns_a_batch(prepared, batch) -> None:
    model = _model(prepared, dropout=0.0, label_smoothing=0.0)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(40):
        loss = model.loss(model(batch), batch["store"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (model(batch).argmax(1) == batch["store"]).float().mean() > 0.95
