"""The report: its keys, a model plugged in through the protocols, the JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from world_model.evaluation import (
    EvaluationTargets,
    NextBasketRanker,
    StorePredictor,
    evaluate,
    next_basket_baselines,
    store_baselines,
    write_metrics,
)
from world_model.evaluation.breakdowns import target_groups
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.tensor_cache import PRODUCT_SPECIALS

RANKERS = ("g_topfreq", "p_topfreq", "tifu_knn")
STORES = ("primary_store", "last_store", "markov_store")


class Oracle:
    """Ranks each target's own known products first and puts all mass on the visited store."""

    name = "oracle"

    def rank(self, targets: EvaluationTargets, k: int = 20) -> np.ndarray:
        out = np.full((len(targets), k), -1)
        for i in range(len(targets)):
            own = targets.items[targets.item_offsets[i] : targets.item_offsets[i + 1]]
            own = own[own >= PRODUCT_SPECIALS][:k]
            out[i, : len(own)] = own
        return out

    def probabilities(self, targets: EvaluationTargets) -> np.ndarray:
        p = np.zeros((len(targets), targets.n_stores), dtype=np.float32)
        p[np.arange(len(targets)), targets.store_row] = 1
        return p


@pytest.fixture(scope="module")
def metrics(prepared: PreparedData) -> dict:
    return evaluate(
        prepared, "test", [*next_basket_baselines(prepared), Oracle()], [*store_baselines(prepared), Oracle()]
    )


def test_report_keys(metrics: dict, prepared: PreparedData) -> None:
    targets = EvaluationTargets.from_prepared(prepared, "test")
    assert metrics["targets/count"] == len(targets) > 0
    for method in RANKERS:
        for k in (10, 20):
            for metric in ("recall", "ndcg", "precision", "hit_rate", "repeat_hits", "explore_hits",
                           "repeat_recall", "explore_recall"):  # fmt: skip
                assert 0 <= metrics[f"next_basket/{method}/{metric}@{k}"] <= (20 if "hits" in metric else 1)
    for method in STORES:
        for metric in ("top1", "top3", "mrr"):
            assert 0 <= metrics[f"store_visit/{method}/{metric}"] <= 1
        assert metrics[f"store_visit/{method}/log_loss"] > 0
    groups = target_groups(targets)
    assert set(groups) == {"weekday", "basket_size", "history", "customer"}
    for dimension, labels in groups.items():
        counts = [metrics[f"breakdown/{dimension}/{g}/count"] for g in set(labels)]
        assert sum(counts) == len(targets)
        for group in set(labels):
            for method in RANKERS:
                assert f"breakdown/{dimension}/{group}/{method}/recall@10" in metrics
                assert f"breakdown/{dimension}/{group}/{method}/ndcg@10" in metrics
            for method in STORES:
                assert f"breakdown/{dimension}/{group}/{method}/top1" in metrics
    assert set(groups["history"]) <= {"new", "regular", "loyal"}
    assert set(groups["basket_size"]) <= {"L", "M", "S", "unknown"}


def test_breakdown_means_average_the_groups(metrics: dict) -> None:
    for dimension in ("weekday", "history", "customer"):
        prefix = f"breakdown/{dimension}/"
        groups = {k.split("/")[2] for k in metrics if k.startswith(prefix)}
        weighted = sum(
            metrics[f"{prefix}{g}/count"] * metrics[f"{prefix}{g}/p_topfreq/recall@10"] for g in groups
        ) / metrics["targets/count"]
        assert weighted == pytest.approx(metrics["next_basket/p_topfreq/recall@10"])


def test_a_model_plugs_in_through_the_protocols(metrics: dict) -> None:
    assert isinstance(Oracle(), NextBasketRanker) and isinstance(Oracle(), StorePredictor)
    assert metrics["next_basket/oracle/hit_rate@20"] == 1
    assert metrics["next_basket/oracle/ndcg@20"] == pytest.approx(1)
    assert metrics["store_visit/oracle/top1"] == 1 and metrics["store_visit/oracle/mrr"] == 1
    assert metrics["next_basket/oracle/recall@20"] > metrics["next_basket/p_topfreq/recall@20"]


def test_limit_and_unique_names(prepared: PreparedData) -> None:
    small = evaluate(prepared, "validation", next_basket_baselines(prepared)[:1], [], limit=25)
    assert small["targets/count"] == 25
    with pytest.raises(ValueError, match="unique"):
        evaluate(prepared, "test", [Oracle(), Oracle()], [])


def test_store_predictors_score_before_the_rankers_that_reuse_them(prepared: PreparedData) -> None:
    """A ranker taking its stores from an evaluated store predictor finds that predictor's result already
    computed, so the scoring happens inside the predictor's own evaluation, not the first ranker's."""
    calls: list[str] = []

    class Stores(Oracle):
        name = "stores"

        def probabilities(self, targets: EvaluationTargets) -> np.ndarray:
            if getattr(self, "last", None) is not targets:
                calls.append("store scoring")
                self.last = targets
            return super().probabilities(targets)

    class StoreAwareRanker(Oracle):
        name = "ranker"

        def rank(self, targets: EvaluationTargets, k: int = 20) -> np.ndarray:
            calls.append("ranking")
            stores.probabilities(targets)
            return super().rank(targets, k)

    stores = Stores()
    evaluate(prepared, "test", [StoreAwareRanker()], [stores], limit=25)
    assert calls == ["store scoring", "ranking"]


def test_write_metrics_is_atomic_json(tmp_path: Path) -> None:
    metrics = {"targets/count": 3, "next_basket/x/explore_recall@10": float("nan")}
    path = write_metrics(metrics, tmp_path / "m" / "metrics.json")
    assert json.loads(path.read_text()) == {"targets/count": 3, "next_basket/x/explore_recall@10": None}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
