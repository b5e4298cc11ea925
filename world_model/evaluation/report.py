"""Evaluate rankers and store predictors side by side on one split, into one flat metrics dict.

Any model is evaluated like the baselines once it follows ``NextBasketRanker`` or ``StorePredictor``:
a ``name`` (the key in the report) and one method over ``EvaluationTargets``. A model computes its own
inputs for ``targets.rows`` from ``targets.data`` (the ``PreparedData`` the targets came from).

Keys (``<m>`` = a method name, ``@k`` for k in ``KS``):

- ``targets/count``;
- ``next_basket/<m>/{recall,precision,ndcg,hit_rate,repeat_hits,explore_hits,repeat_recall,explore_recall}@k``
  and ``next_basket/<m>/seconds``;
- ``store_visit/<m>/{top1,top3,mrr,log_loss}`` and ``store_visit/<m>/seconds``;
- ``breakdown/<dimension>/<group>/<m>/<metric>`` for ``BREAKDOWN_NEXT_BASKET`` and ``BREAKDOWN_STORE``,
  and ``breakdown/<dimension>/<group>/count`` (see ``breakdowns.target_groups``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from world_model.evaluation.breakdowns import breakdown, group_counts, target_groups
from world_model.evaluation.metrics import mean_metrics, next_basket_metrics, store_metrics
from world_model.evaluation.targets import EvaluationTargets
from world_model.files import json_safe, write_text_atomic
from world_model.pipeline.loader import PreparedData

KS = (10, 20)
BREAKDOWN_NEXT_BASKET = ("recall@10", "ndcg@10")
BREAKDOWN_STORE = ("top1",)


@runtime_checkable
class NextBasketRanker(Protocol):
    """Ranks products for each target basket."""

    name: str

    def rank(self, targets: EvaluationTargets, k: int = 20) -> np.ndarray:
        """[len(targets), k] int product vocabulary rows, best first; -1 = no prediction. Never PAD,
        UNK or MASK (rows < 3), never a product twice in a row."""
        ...


@runtime_checkable
class StorePredictor(Protocol):
    """Predicts the store of each target trip."""

    name: str

    def probabilities(self, targets: EvaluationTargets) -> np.ndarray:
        """[len(targets), n_stores] float, each row a distribution over store rows (0 = UNK)."""
        ...


def _check_names(methods: list, kind: str) -> None:
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"{kind}: method names must be unique, got {names}")


def _add_breakdowns(
    out: dict[str, float],
    groups: dict[str, np.ndarray],
    method: str,
    per_target: dict[str, np.ndarray],
    metrics: tuple[str, ...],
) -> None:
    for dimension, labels in groups.items():
        for metric in metrics:
            for group, mean in breakdown(per_target[metric], labels).items():
                out[f"breakdown/{dimension}/{group}/{method}/{metric}"] = mean


def evaluate(
    data: PreparedData,
    split: str,
    rankers: list[NextBasketRanker],
    store_predictors: list[StorePredictor],
    limit: int | None = None,
) -> dict[str, float]:
    """The flat metrics dict of the module docstring for ``split``'s targets (a sample of ``limit`` of
    them when given). Seconds are each method's ``rank`` / ``probabilities`` call, fitting excluded (and,
    for a ranker whose stores come from one of ``store_predictors``, that predictor's scoring)."""
    _check_names(rankers, "rankers")
    _check_names(store_predictors, "store_predictors")
    targets = EvaluationTargets.from_prepared(data, split, limit=limit)
    groups = target_groups(targets)
    out: dict[str, float] = {"targets/count": len(targets)}
    for dimension, labels in groups.items():
        for group, count in group_counts(labels).items():
            out[f"breakdown/{dimension}/{group}/count"] = count
    # Store predictors first: a ranker taking its stores from one of them reuses its last result, so
    # each method's seconds are its own.
    for predictor in store_predictors:
        start = time.perf_counter()
        probabilities = predictor.probabilities(targets)
        seconds = time.perf_counter() - start
        per_target = store_metrics(probabilities, targets.store_row)
        for metric, mean in mean_metrics(per_target).items():
            out[f"store_visit/{predictor.name}/{metric}"] = mean
        out[f"store_visit/{predictor.name}/seconds"] = seconds
        _add_breakdowns(out, groups, predictor.name, per_target, BREAKDOWN_STORE)
    for ranker in rankers:
        start = time.perf_counter()
        ranked = ranker.rank(targets, k=max(KS))
        seconds = time.perf_counter() - start
        per_target = next_basket_metrics(ranked, targets, KS)
        for metric, mean in mean_metrics(per_target).items():
            out[f"next_basket/{ranker.name}/{metric}"] = mean
        out[f"next_basket/{ranker.name}/seconds"] = seconds
        _add_breakdowns(out, groups, ranker.name, per_target, BREAKDOWN_NEXT_BASKET)
    return out


def write_metrics(metrics: dict[str, float], path: Path | str) -> Path:
    """Write ``metrics`` as JSON (sorted keys; NaN and inf as null, which strict JSON readers accept) to ``path``
    atomically (``world_model.files``), so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(json_safe(metrics), indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path
