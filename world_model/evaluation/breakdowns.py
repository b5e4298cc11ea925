"""Metric averages by kind of target: when it happens, how big the basket is, how well the customer is known.

A model can win on average and lose where it matters (new customers, big shops), so every per-target
metric array is also averaged within the groups of each dimension below. Group labels are strings so that
they read the same in a JSON report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from world_model.evaluation.targets import EvaluationTargets

WEEKDAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
"""SHOP_WEEKDAY 1..7, the LGSR convention (1 = Sunday)."""
REGULAR_FROM, LOYAL_FROM = 5, 20
"""History groups by earlier trips: ``new`` < 5, ``regular`` 5-19, ``loyal`` >= 20."""
UNKNOWN = "unknown"


def _name(codes: np.ndarray, names: Sequence[str], first: int) -> np.ndarray:
    """Names of integer ``codes`` (``first`` = the code of ``names[0]``); ``unknown`` outside the range."""
    lookup = np.array([*names, UNKNOWN], dtype=object)
    position = codes - first
    return lookup[np.where((position >= 0) & (position < len(names)), position, len(names))]


def target_groups(targets: EvaluationTargets) -> dict[str, np.ndarray]:
    """{dimension: [n] group label}: ``weekday``, ``basket_size`` (the BASKET_SIZE code book's names),
    ``history`` (new / regular / loyal) and ``customer`` (``cold_start``: customer_row 0, not seen in
    training; ``known``)."""
    sizes = targets.data.vocab["trip_code_books"]["BASKET_SIZE"]
    history = np.select(
        [targets.history_baskets < REGULAR_FROM, targets.history_baskets < LOYAL_FROM], ["new", "regular"], "loyal"
    )
    return {
        "weekday": _name(targets.weekday, WEEKDAY_NAMES, 1),
        "basket_size": _name(targets.basket_size, sizes, 0),
        "history": history.astype(object),
        "customer": np.where(targets.customer_row == 0, "cold_start", "known").astype(object),
    }


def breakdown(values: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """{label: mean of ``values`` [n] over the targets with that label}, NaN entries skipped."""
    out = {}
    for label in sorted(set(labels)):
        chosen = values[(labels == label) & ~np.isnan(values)]
        out[label] = float(chosen.mean()) if len(chosen) else float("nan")
    return out


def group_counts(labels: np.ndarray) -> dict[str, int]:
    """{label: number of targets}."""
    names, counts = np.unique(labels.astype(str), return_counts=True)
    return {str(name): int(count) for name, count in zip(names, counts)}
