"""Next-basket and store-visit metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.world_model.evaluation.conftest import TEST, TRAIN, hand_made
from world_model.evaluation.metrics import mean_metrics, next_basket_metrics, store_metrics
from world_model.evaluation.targets import EvaluationTargets
from world_model.pipeline.tensor_cache import MASK, PAD, UNK


@pytest.fixture
def two_targets() -> EvaluationTargets:
    """A: history {3, 4, 9}, target {3, 4, 5, 6} (two repeats, two explores). B: history {3}, target
    {3, UNK} (UNK counts in |T| and is neither repeat nor explore)."""
    data = hand_made([
        [(TRAIN, 1, [3, 4, 9]), (TEST, 1, [3, 4, 5, 6])],
        [(TRAIN, 2, [3]), (TEST, 2, [UNK, 3])],
    ])  # fmt: skip
    return EvaluationTargets.from_prepared(data, "test")


def test_next_basket_metrics_by_hand(two_targets: EvaluationTargets) -> None:
    ranked = np.array([[3, 7, 5], [8, 3, -1]])
    m = next_basket_metrics(ranked, two_targets, ks=(1, 3))
    ideal_a3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # min(|T| = 4, k = 3) ideal hits
    ideal_b3 = 1 + 1 / math.log2(3)  # min(|T| = 2, 3)
    expected = {
        "recall@1": [1 / 4, 0], "precision@1": [1, 0], "ndcg@1": [1, 0], "hit_rate@1": [1, 0],
        "repeat_hits@1": [1, 0], "explore_hits@1": [0, 0], "repeat_recall@1": [1 / 2, 0],
        "explore_recall@1": [0, np.nan],
        "recall@3": [2 / 4, 1 / 2], "precision@3": [2 / 3, 1 / 3],
        "ndcg@3": [(1 + 1 / math.log2(4)) / ideal_a3, (1 / math.log2(3)) / ideal_b3], "hit_rate@3": [1, 1],
        "repeat_hits@3": [1, 1], "explore_hits@3": [1, 0], "repeat_recall@3": [1 / 2, 1],
        "explore_recall@3": [1 / 2, np.nan],
    }  # fmt: skip
    assert set(m) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(m[name], values, err_msg=name)
    means = mean_metrics(m)
    assert means["recall@3"] == pytest.approx(0.5)
    assert means["explore_recall@3"] == pytest.approx(0.5)  # B has no explore item: skipped, not zero


def test_repeat_flags_follow_the_history(two_targets: EvaluationTargets) -> None:
    assert two_targets.items.tolist() == [3, 4, 5, 6, UNK, 3]
    assert two_targets.item_is_repeat.tolist() == [True, True, False, False, False, True]


@pytest.mark.parametrize(
    "ranked, message",
    [
        ([[3, UNK, 4], [5, 6, 7]], "PAD, UNK or MASK"),
        ([[3, 4, 5], [PAD, 6, 7]], "PAD, UNK or MASK"),
        ([[3, 4, 5], [MASK, 6, 7]], "PAD, UNK or MASK"),
        ([[3, 4, 3], [5, 6, 7]], "twice"),
        ([[3, 4], [5, 6]], "shape"),
        ([[3, 4, 15], [5, 6, 7]], "row 15, past the vocabulary's 12 rows"),  # key 0 x 12 + 15: B's item 3
    ],
)
def test_invalid_rankings_are_refused(two_targets: EvaluationTargets, ranked: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        next_basket_metrics(np.array(ranked), two_targets, ks=(1, 3))


def test_missing_predictions_may_repeat(two_targets: EvaluationTargets) -> None:
    m = next_basket_metrics(np.array([[3, -1, -1], [-1, -1, -1]]), two_targets, ks=(3,))
    np.testing.assert_allclose(m["recall@3"], [1 / 4, 0])
    np.testing.assert_allclose(m["precision@3"], [1 / 3, 0])


def test_store_metrics_by_hand() -> None:
    probabilities = np.array([
        [0.7, 0.2, 0.1, 0.0],  # label 0: rank 1
        [0.1, 0.3, 0.6, 0.0],  # label 1: rank 2
        [0.25, 0.25, 0.25, 0.25],  # label 3: tied with three lower rows, rank 4
        [0.5, 0.5, 0.0, 0.0],  # label 2: probability 0, rank 3 (row 3 ties but is higher)
    ])  # fmt: skip
    m = store_metrics(probabilities, np.array([0, 1, 3, 2]))
    np.testing.assert_allclose(m["top1"], [1, 0, 0, 0])
    np.testing.assert_allclose(m["top3"], [1, 1, 0, 1])
    np.testing.assert_allclose(m["mrr"], [1, 1 / 2, 1 / 4, 1 / 3])
    floor = 1e-12  # zeros clipped to 1e-12, then each row renormalized
    expected = [0.7 / (1 + floor), 0.3 / (1 + floor), 0.25, floor / (1 + 2 * floor)]
    np.testing.assert_allclose(m["log_loss"], -np.log(expected))
    means = mean_metrics(m)
    assert means["top3"] == pytest.approx(0.75) and means["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 3) / 4)


def test_store_labels_must_be_store_rows() -> None:
    with pytest.raises(ValueError, match="labels"):
        store_metrics(np.full((2, 3), 1 / 3), np.array([0, 3]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.1])
def test_store_probabilities_must_be_finite_and_non_negative(bad: float) -> None:
    """A NaN on the label would rank it first (no store compares above it) and drop out of the log-loss."""
    probabilities = np.array([[0.2, 0.5, 0.3], [bad, 0.5, 0.5]])
    with pytest.raises(ValueError, match=r"^probabilities: row 1 holds NaN, inf or a negative value"):
        store_metrics(probabilities, np.array([1, 0]))
