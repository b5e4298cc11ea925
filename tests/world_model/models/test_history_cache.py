"""The cacheable layout (context after the encoder) and ``HistoryCache``: the cached logits are the model's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from world_model.models.basket import BasketModelConfig, BasketWorldModel
from world_model.models.batches import BatchBuilder
from world_model.models.history_cache import CONTEXT_KEYS, HISTORY_KEYS, HistoryCache
from world_model.pipeline.loader import PreparedData
from world_model.training.tasks import trip_classes


def _model(data: PreparedData, context_position: str = "decoder", decoder_layers: int = 2) -> BasketWorldModel:
    torch.manual_seed(0)
    config = BasketModelConfig.small(n_products=data.n_products, trip_classes=trip_classes(data), d_model=32,
                                     n_heads=4, ffn=64, max_sequence_items=16, decoder_layers=decoder_layers,
                                     context_position=context_position)  # fmt: skip
    model = BasketWorldModel(config, data.products, data.customers, data.stores).eval()
    with torch.no_grad():  # a trained-looking repeat head and bias, so the logits are not near-uniform
        model.output_bias.normal_(0, 1)
    return model


@pytest.fixture(scope="module")
def rows(prepared: PreparedData) -> np.ndarray:
    history = np.asarray(prepared.basket_table)[:, 6]
    with_history = np.flatnonzero(history >= 3)[:20]
    cold = np.flatnonzero(history == 0)[:4]  # no history at all: the memory is the context alone
    return np.concatenate([with_history, cold])


def test_cached_logits_equal_the_full_forward(prepared, rows) -> None:
    model = _model(prepared)
    batch = BatchBuilder(prepared, max_sequence_items=16).next_basket(rows)
    cache = HistoryCache(model, {key: batch[key] for key in HISTORY_KEYS}, batch_size=7)
    with torch.no_grad():
        expected = model(batch)["logits"]
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(1))  # trips in any order
    got = cache.logits(order, {key: batch[key][order] for key in CONTEXT_KEYS})
    finite = torch.isfinite(expected)
    assert torch.equal(finite, torch.isfinite(got[order.argsort()]))
    torch.testing.assert_close(got[order.argsort()][finite], expected[finite], rtol=1e-4, atol=1e-4)
    assert len(cache) == len(rows) and cache.nbytes > 0


def test_decoder_layout_history_encoding_ignores_the_trip_and_the_passage_of_time(prepared, rows) -> None:
    model = _model(prepared)
    batch = BatchBuilder(prepared, max_sequence_items=16).next_basket(rows)
    later = dict(batch, item_weeks=batch["item_weeks"] + 5.0 * (batch["item_basket"] > 0), t3=torch.randn_like(batch["t3"]))
    with torch.no_grad():
        states, real = model.encode_history(batch)
        states_later, _ = model.encode_history(later)
        assert torch.equal(states, states_later)
        assert real.sum() == (batch["item_basket"] > 0).sum()
        # the trip's context still moves the prediction, through the decoder
        assert not torch.allclose(model(batch)["logits"][:, 3:], model(later)["logits"][:, 3:])


def test_encoder_layout_history_depends_on_the_trip(prepared, rows) -> None:
    """The first layout's reason not to cache: the context leads the Mamba sequence."""
    model = _model(prepared, context_position="encoder")
    batch = BatchBuilder(prepared, max_sequence_items=16).next_basket(rows)
    moved = dict(batch, t3=torch.randn_like(batch["t3"]))
    with torch.no_grad():
        states, _ = model.encode(batch)
        states_moved, _ = model.encode(moved)
    assert not torch.allclose(states[:, 1:], states_moved[:, 1:])
    with pytest.raises(ValueError, match="context_position='decoder'"):
        HistoryCache(model, {key: batch[key] for key in HISTORY_KEYS})


def test_the_cache_refuses_a_training_model(prepared, rows) -> None:
    model = _model(prepared).train()
    batch = BatchBuilder(prepared, max_sequence_items=16).next_basket(rows)
    with pytest.raises(ValueError, match="eval"):
        HistoryCache(model, {key: batch[key] for key in HISTORY_KEYS})


def test_checkpoints_without_the_option_load_as_the_first_layout() -> None:
    config = BasketModelConfig.from_dict({"n_products": 10})
    assert config.context_position == "encoder"
    assert BasketModelConfig.from_dict(BasketModelConfig(n_products=10, context_position="decoder").to_dict()).context_position == "decoder"
    with pytest.raises(ValueError, match="context_position"):
        BasketModelConfig(n_products=10, context_position="middle")


def test_a_bfloat16_cache_under_autocast_stays_close(prepared, rows) -> None:
    model = _model(prepared)
    batch = BatchBuilder(prepared, max_sequence_items=16).next_basket(rows)
    cache = HistoryCache(model, {key: batch[key] for key in HISTORY_KEYS}, dtype=torch.bfloat16)
    assert cache.states.dtype == torch.bfloat16
    index = torch.arange(len(rows))
    with torch.no_grad():
        expected = torch.softmax(model(batch)["logits"], -1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = torch.softmax(cache.logits(index, {key: batch[key] for key in CONTEXT_KEYS}).float(), -1)
    torch.testing.assert_close(got, expected, atol=3e-3, rtol=0.05)
