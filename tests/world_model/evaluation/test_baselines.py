"""Baselines on hand-made histories, plus the rules every ranker must keep on the tiny work directory."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tests.world_model.evaluation.conftest import TEST, TRAIN, VALIDATION, hand_made
from world_model.evaluation.baselines import (
    TIFUKNN,
    GTopFreq,
    LastStore,
    MarkovStore,
    PrimaryStore,
    PTopFreq,
    next_basket_baselines,
    rule_distribution,
    store_baselines,
    tifu_vectors,
    top_scores,
    training_popularity,
)
from world_model.evaluation.targets import EvaluationTargets, history_items
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.tensor_cache import PRODUCT_SPECIALS, UNK

# Customer 1: training history then a test target. Its counts: 3 x2 (latest 2 baskets back), 4 x2 (3 back),
# 7 x1 (1 back), 6 x1 (2 back), 5 x1 (3 back); UNK x1, never ranked.
# Customer 2: product 9 in 3 training baskets; product 8 in 5 later baskets only (popular, but not in training).
HISTORIES = [
    [(TRAIN, 1, [3, 4]), (TRAIN, 1, [4, 5]), (TRAIN, 1, [3, 6]), (TRAIN, 1, [UNK, 7]), (TEST, 1, [3, 5])],
    [(TRAIN, 2, [9, 10]), (TRAIN, 2, [9, 11]), (TRAIN, 2, [9]), (VALIDATION, 2, [8, 10]), (VALIDATION, 2, [8, 11]),
     (VALIDATION, 2, [8, 3]), (VALIDATION, 2, [8, 4]), (TEST, 2, [8, 9])],
]  # fmt: skip
TRAINING_ORDER = [9, 3, 4, 5, 6, 7, 10, 11, 8]  # by training baskets, ties by row; 8 was never bought in training


def test_g_topfreq_counts_training_baskets_only() -> None:
    data = hand_made(HISTORIES)
    popularity = training_popularity(data)
    assert popularity[8] == 0 and popularity[9] == 3 and popularity[UNK] == 0
    targets = EvaluationTargets.from_prepared(data, "test")
    assert GTopFreq(data).rank(targets, k=5).tolist() == [TRAINING_ORDER[:5]] * 2


def test_p_topfreq_breaks_ties_by_recency_then_fills_with_popularity() -> None:
    data = hand_made(HISTORIES)
    targets = EvaluationTargets.from_prepared(data, "test")
    ranked = PTopFreq(data).rank(targets, k=8)
    assert ranked[0].tolist() == [3, 4, 7, 6, 5, 9, 10, 11]
    # Customer 2: 8 in 4 baskets, 9 in 3, then 10 and 11 (2 each; 11 more recent), 3 and 4 (4 more recent).
    assert ranked[1].tolist() == [8, 9, 11, 10, 4, 3, 5, 6]


def test_p_topfreq_matches_plain_python(prepared: PreparedData) -> None:
    targets = EvaluationTargets.from_prepared(prepared, "test")
    ranked = PTopFreq(prepared).rank(targets, k=20)
    offsets, items = prepared.basket_offsets, prepared.basket_items
    for i in range(len(targets)):
        count: Counter = Counter()
        latest: dict[int, int] = {}
        for row in targets.history_rows(i):
            for item in items[offsets[row] : offsets[row + 1]].tolist():
                if item >= PRODUCT_SPECIALS:
                    count[item] += 1
                    latest[item] = int(targets.rows[i] - row)
        own = sorted(count, key=lambda x: (-count[x], latest[x], x))[:20]
        assert ranked[i, : len(own)].tolist() == own


def test_tifu_vectors_follow_the_group_decay() -> None:
    # Nine baskets, m = 7: the latest seven form a full group, the oldest two a group of two.
    baskets = [[3], [4]] + [[5]] * 6 + [[3]]
    data = hand_made([[(TRAIN, 1, b) for b in baskets] + [(TEST, 1, [3, 4])]])
    end, count = np.array([len(baskets)]), np.array([len(baskets)])
    vector = tifu_vectors(history_items(data, end, count), count, data.n_products, 7, 0.9, 0.7).toarray()[0]
    rb, rg = 0.9, 0.7
    groups = 2
    assert vector[3] == pytest.approx((1 / 7 + rg * rb / 2) / groups)  # latest basket; oldest of group 2
    assert vector[4] == pytest.approx(rg / 2 / groups)  # latest basket of the older group
    assert vector[5] == pytest.approx(sum(rb**j for j in range(1, 7)) / 7 / groups)
    assert vector[:PRODUCT_SPECIALS].sum() == 0


def test_tifu_knn_neighbours_exclude_the_customer_itself() -> None:
    # A's own training vector equals its target-time vector (distance 0); B is the nearest other customer.
    data = hand_made([
        [(TRAIN, 1, [3, 4]), (TRAIN, 1, [3, 4]), (TEST, 1, [3, 4])],
        [(TRAIN, 1, [3, 5]), (TRAIN, 1, [3, 5]), (TRAIN, 1, [3, 5])],
        [(TRAIN, 1, [6, 7]), (TRAIN, 1, [6, 7]), (TRAIN, 1, [6, 7])],
    ])  # fmt: skip
    targets = EvaluationTargets.from_prepared(data, "test")
    neighbours_only = TIFUKNN(data, neighbours=1, alpha=0.0).rank(targets, k=4)
    assert neighbours_only[0, :2].tolist() == [3, 5]  # B's products, not A's own 4
    own_only = TIFUKNN(data, neighbours=1, alpha=1.0).rank(targets, k=4)
    assert own_only[0, :2].tolist() == [3, 4]
    assert len(set(own_only[0].tolist())) == 4  # filled with popular products after the scored ones


@pytest.mark.parametrize("split", ["validation", "test"])
def test_rankers_never_rank_specials_or_repeat_a_product(prepared: PreparedData, split: str) -> None:
    targets = EvaluationTargets.from_prepared(prepared, split)
    for ranker in next_basket_baselines(prepared):
        ranked = ranker.rank(targets, k=20)
        assert ranked.shape == (len(targets), 20), ranker.name
        assert np.all(ranked >= PRODUCT_SPECIALS), ranker.name  # 60 products: every slot is filled
        assert all(len(set(row)) == 20 for row in ranked.tolist()), ranker.name


# Customer 1 visits 1, 2, 2, 1, 3: stores 1 and 2 tie on visits, 1 is the more recent; its last store is 3.
# Customer 2 moves 3 -> 2 twice in training, so the chain sends customer 1 from 3 to 2; from 2 it stays at 2
# (2 -> 2 twice, 2 -> 1, 3 and 4 once each).
# Customer 3's last store 4 is never left in training: the chain falls back to its primary store 2.
STORE_HISTORIES = [
    [(TRAIN, s, [3]) for s in (1, 2, 2, 1, 3)] + [(TEST, 1, [3, 4])],
    [(TRAIN, s, [3]) for s in (3, 2, 3, 2)] + [(TEST, 2, [3, 4])],
    [(TRAIN, s, [3]) for s in (2, 2, 4)] + [(TEST, 4, [3, 4])],
]


def test_store_rules_by_hand() -> None:
    data = hand_made(STORE_HISTORIES)
    targets = EvaluationTargets.from_prepared(data, "test")
    expected = {PrimaryStore: [1, 2, 2], LastStore: [3, 2, 4], MarkovStore: [2, 2, 2]}
    for rule, stores in expected.items():
        predictor = rule(data)
        assert predictor.predict(targets).tolist() == stores, predictor.name
        p = predictor.probabilities(targets)
        assert p.dtype == np.float32 and p.shape == (3, data.n_stores)
        np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
        assert p.argmax(axis=1).tolist() == stores and np.all(p > 0)
        assert 0.5 < predictor.rule_mass < 1 and 0 < predictor.new_share < 1


def test_markov_counts_training_transitions() -> None:
    chain = MarkovStore(hand_made(STORE_HISTORIES))
    assert chain.transitions[3, 2] == 2 and chain.transitions[2, 3] == 1 and chain.transitions[4].sum() == 0


def test_rule_distribution_by_hand() -> None:
    visits = np.array([[0, 3, 1, 0], [0, 2, 0, 0]], dtype=np.float32)
    p = rule_distribution(np.array([1, 1]), visits, rule_mass=0.8, new_share=0.25)
    # Row 0: of the other 0.2, 0.75 to store 2 (the only other visited store), 0.25 evenly over 0, 2, 3.
    np.testing.assert_allclose(p[0], [0.05 / 3, 0.8, 0.15 + 0.05 / 3, 0.05 / 3], rtol=1e-6)
    np.testing.assert_allclose(p[1], [0.2 / 3, 0.8, 0.2 / 3, 0.2 / 3], rtol=1e-6)  # nothing else visited


def test_store_baselines_on_the_tiny_market(prepared: PreparedData) -> None:
    targets = EvaluationTargets.from_prepared(prepared, "test")
    for predictor in store_baselines(prepared):
        p = predictor.probabilities(targets)
        assert p.shape == (len(targets), prepared.n_stores)
        np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
        assert p.argmax(axis=1).tolist() == predictor.predict(targets).tolist()


def test_top_scores_breaks_ties_by_column() -> None:
    """Many columns tied at the cut: the lowest ones are kept, in column order after the larger scores
    (argpartition alone kept an arbitrary subset of them); zero scores are no prediction."""
    scores = np.zeros((2, 300))
    scores[:, 5], scores[0, 100:], scores[1, 290] = 2.0, 1.0, 3.0
    top = top_scores(scores, 20)
    assert top[0].tolist() == [5, *range(100, 119)]
    assert top[1].tolist() == [290, 5] + [-1] * 18
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (300, 40)).astype(float)
    order = np.lexsort((np.broadcast_to(np.arange(40), scores.shape), -scores), axis=1)[:, :10]
    expected = np.where(np.take_along_axis(scores, order, 1) > 0, order, -1)
    assert (top_scores(scores, 10) == expected).all()
