"""The basket world model on a tiny prepared market: shapes, the repeat head, losses, both objectives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from world_model.models.basket import (
    TRIP_HEADS,
    BasketModelConfig,
    BasketWorldModel,
    focal_loss,
    multilabel_softmax_loss,
    sampled_softmax_loss,
    top_k_products,
    trip_head_loss,
)
from world_model.models.batches import BatchBuilder
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.tensor_cache import PRODUCT_SPECIALS
from world_model.training.tasks import trip_classes


def _model(data: PreparedData, **overrides) -> BasketWorldModel:
    torch.manual_seed(0)
    config = BasketModelConfig.small(n_products=data.n_products, trip_classes=trip_classes(data), d_model=32,
                                     n_heads=4, ffn=64, max_sequence_items=16, **overrides)  # fmt: skip
    return BasketWorldModel(config, data.products, data.customers, data.stores)


@pytest.fixture(scope="module")
def rows(prepared: PreparedData) -> np.ndarray:
    table = np.asarray(prepared.basket_table)
    sizes = np.diff(np.asarray(prepared.basket_offsets))
    return np.flatnonzero((table[:, 6] >= 1) & (sizes >= 2))[:24]


def test_next_basket_logits_cover_the_vocabulary_and_never_rank_specials(prepared, rows) -> None:
    model = _model(prepared).eval()
    batch = BatchBuilder(prepared, max_sequence_items=16).next_basket(rows)
    out = model(batch)
    logits = out["logits"]
    assert logits.shape == (len(rows), prepared.n_products)
    assert torch.isinf(logits[:, :PRODUCT_SPECIALS]).all() and torch.isfinite(logits[:, PRODUCT_SPECIALS:]).all()
    assert (top_k_products(logits, 10) >= PRODUCT_SPECIALS).all()
    for name in TRIP_HEADS:
        assert out[name].shape == (len(rows), len(prepared.vocab["trip_code_books"][name]))


def test_repeat_head_moves_exactly_the_customers_own_products(prepared, rows) -> None:
    model = _model(prepared).eval()
    batch = BatchBuilder(prepared, max_sequence_items=16).next_basket(rows)
    with torch.no_grad():
        summary = model(batch)["summary"]
        with_history = model.product_logits(summary, batch["candidates"], batch["candidate_features"])
        without = model.product_logits(summary, torch.zeros_like(batch["candidates"]), batch["candidate_features"])
    changed = (with_history != without) & torch.isfinite(without)
    own = torch.zeros_like(changed)
    own.scatter_(1, batch["candidates"], True)
    own[:, :PRODUCT_SPECIALS] = False
    assert changed.any() and not (changed & ~own).any()


def test_packed_and_dense_repeat_scoring_agree_with_their_gradients(prepared, rows) -> None:
    """The CPU path scores the real candidates only, the CUDA path every slot with padding masked."""
    model = _model(prepared, dropout=0.0).eval()
    batch = BatchBuilder(prepared, max_sequence_items=16).next_basket(rows)
    candidates = batch["candidates"].clone()
    candidates[0, 1] = candidates[0, 0]  # a duplicate slot adds twice on both paths
    summary = model(batch)["summary"].detach().requires_grad_(True)
    results = []
    for packed in (True, False):
        logits = model.product_logits(summary, candidates, batch["candidate_features"], packed=packed)
        (gradient,) = torch.autograd.grad(logits[torch.isfinite(logits)].sum(), summary)
        results.append((logits.detach(), gradient))
    (packed_logits, packed_gradient), (dense_logits, dense_gradient) = results
    assert (candidates < PRODUCT_SPECIALS).any() and (candidates >= PRODUCT_SPECIALS).any()  # both kinds of slot
    torch.testing.assert_close(packed_logits, dense_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed_gradient, dense_gradient, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("context_position", ["encoder", "decoder"])
def test_the_model_learns_a_batch(prepared, rows, context_position) -> None:
    model = _model(prepared, dropout=0.0, context_position=context_position)
    batch = BatchBuilder(prepared, max_sequence_items=16).next_basket(rows, true_trip=True)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(60):
        out = model(batch)
        loss = multilabel_softmax_loss(out["logits"], batch["targets"]) + trip_head_loss(out, {n: batch[n] for n in TRIP_HEADS})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


@pytest.mark.parametrize("context_position", ["encoder", "decoder"])
def test_masked_objective(prepared, rows, context_position) -> None:
    model = _model(prepared, objective="masked", context_position=context_position).eval()
    batch = BatchBuilder(prepared, max_sequence_items=16).masked_basket(rows, np.random.default_rng(0), 0.5)
    out = model(batch)
    assert out["masked_logits"].shape == (*batch["basket_input"].shape, prepared.n_products)
    assert out["basket_embedding"].shape == out["encoder_summary"].shape
    chosen = batch["basket_labels"] != -100
    assert chosen.any() and (batch["basket_input"][chosen] != batch["targets"][chosen]).any()
    assert torch.isfinite(focal_loss(out["masked_logits"], batch["basket_labels"]))


def test_multilabel_loss_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 1.0, 2.0, 0.0]])
    targets = torch.tensor([[4, 3, 1, 0]])  # UNK (1) and PAD (0) are ignored
    log_p = torch.log_softmax(logits, -1)
    assert multilabel_softmax_loss(logits, targets).item() == pytest.approx(-(log_p[0, 4] + log_p[0, 3]).item() / 2)
    # a sampled softmax that keeps every real product is the full one (specials excluded in both)
    full = logits.clone()
    full[:, :PRODUCT_SPECIALS] = float("-inf")
    sampled = sampled_softmax_loss(full, targets, torch.tensor([[5]]), negatives=50, generator=torch.Generator().manual_seed(0))
    assert sampled.item() == pytest.approx(multilabel_softmax_loss(full, targets).item(), rel=1e-6)


def test_a_batch_of_unk_only_baskets_has_zero_loss_not_nan() -> None:
    """Baskets of products outside the vocabulary are targets of UNK alone: nothing to rank, so 0 (the
    special rows' -inf logits must not turn it into NaN), with a zero gradient, in both losses."""
    logits = torch.tensor([[float("-inf")] * PRODUCT_SPECIALS + [1.0, 2.0, 0.5]] * 2, requires_grad=True)
    targets = torch.tensor([[1, 0], [1, 1]])  # UNK, PAD
    sampled = sampled_softmax_loss(logits, targets, torch.tensor([[3], [4]]), negatives=2,
                                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    for loss in (multilabel_softmax_loss(logits, targets), sampled):
        assert loss.item() == 0.0
        (gradient,) = torch.autograd.grad(loss, logits)
        assert torch.equal(gradient, torch.zeros_like(gradient))


def test_focal_loss_reduces_to_cross_entropy_at_gamma_zero() -> None:
    logits = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([[1, -100, 4], [-100, 6, 0]])
    expected = F.cross_entropy(logits.reshape(-1, 7), labels.reshape(-1), ignore_index=-100)
    assert focal_loss(logits, labels, gamma=0.0).item() == pytest.approx(expected.item(), rel=1e-6)
    assert focal_loss(logits, labels, gamma=2.0).item() < expected.item()


def test_state_dict_uses_mamba_ssm_names(prepared) -> None:
    names = set(_model(prepared).state_dict())
    for part in ("in_proj.weight", "conv1d.weight", "x_proj.weight", "dt_proj.bias", "A_log", "D", "out_proj.weight"):
        assert f"encoder.layers.0.mixer.{part}" in names


def test_trip_head_loss_keeps_a_head_without_known_labels_in_the_graph() -> None:
    """The mean over the heads that have a known label, and a head with none still gets a (zero)
    gradient: DistributedDataParallel needs one for every parameter on every rank."""
    torch.manual_seed(0)
    outputs = {"known": torch.randn(6, 3, requires_grad=True), "unknown": torch.randn(6, 4, requires_grad=True)}
    labels = {"known": torch.tensor([0, 1, -1, 2, -1, 0]), "unknown": torch.full((6,), -1)}
    loss = trip_head_loss(outputs, labels)
    loss.backward()
    assert loss.item() == pytest.approx(F.cross_entropy(outputs["known"], labels["known"], ignore_index=-1).item())
    assert outputs["unknown"].grad is not None and not outputs["unknown"].grad.any()
