"""Next-basket and store-visit evaluation: targets, metrics, baselines, breakdowns and the report.

    from world_model.evaluation import evaluate, next_basket_baselines, store_baselines, write_metrics
    data = PreparedData("work")
    metrics = evaluate(data, "test", next_basket_baselines(data), store_baselines(data))
    write_metrics(metrics, "work/metrics.json")

A model joins the comparison by following ``NextBasketRanker`` (``name``, ``rank(targets, k)``) or
``StorePredictor`` (``name``, ``probabilities(targets)``), defined in ``report``.
"""

from world_model.evaluation.baselines import (
    TIFUKNN,
    GTopFreq,
    LastStore,
    MarkovStore,
    PrimaryStore,
    PTopFreq,
    next_basket_baselines,
    store_baselines,
)
from world_model.evaluation.metrics import mean_metrics, next_basket_metrics, store_metrics
from world_model.evaluation.report import NextBasketRanker, StorePredictor, evaluate, write_metrics
from world_model.evaluation.targets import EvaluationTargets

__all__ = [
    "TIFUKNN", "EvaluationTargets", "GTopFreq", "LastStore", "MarkovStore", "NextBasketRanker", "PTopFreq",
    "PrimaryStore", "StorePredictor", "evaluate", "mean_metrics", "next_basket_baselines", "next_basket_metrics",
    "store_baselines", "store_metrics", "write_metrics",
]  # fmt: skip
