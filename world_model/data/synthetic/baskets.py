"""Basket-level LGSR labels derived from a basket's lines.

* BASKET_SIZE from the item count: S (1-2 items), M (3-6), L (7+); a Full Shop is always L.
* BASKET_TYPE is the shopping mission (Top Up / Small Shop / Full Shop).
* BASKET_DOMINANT_MISSION from the division kinds of the items: Fresh, Grocery or Nonfood when that
  kind holds at least ``DOMINANCE`` of the lines, else Mixed.
* BASKET_PRICE_SENSITIVITY from the mean price tier of the lines (LA = -1, MM = 0, UM = +1): LA below
  ``LA_CUT``, UM above ``UM_CUT``, else MM (cuts set to give about the real shares 23% / 53% / 24%).
* Each of type, dominant mission and price sensitivity is "XX" with a small probability, as in LGSR.
"""

from __future__ import annotations

import numpy as np

from .catalog import KIND_NAMES, TIER_NAMES
from .population import MISSION_NAMES

SIZE_NAMES: tuple[str, ...] = ("S", "M", "L")
TYPE_NAMES: tuple[str, ...] = MISSION_NAMES + ("XX",)
DOMINANT_NAMES: tuple[str, ...] = KIND_NAMES + ("Mixed", "XX")
PRICE_SENSITIVITY_NAMES: tuple[str, ...] = TIER_NAMES + ("XX",)
FULL_SHOP = MISSION_NAMES.index("Full Shop")
DOMINANCE = 0.6
LA_CUT = -0.3
UM_CUT = 0.2


def basket_size(n_items: np.ndarray, mission: np.ndarray) -> np.ndarray:
    """Index into SIZE_NAMES per basket."""
    size = np.where(n_items <= 2, 0, np.where(n_items <= 6, 1, 2))
    return np.where(mission == FULL_SHOP, 2, size)


def dominant_mission(line_basket: np.ndarray, line_kind: np.ndarray, n_baskets: int) -> np.ndarray:
    """Index into DOMINANT_NAMES per basket from its lines' division kinds."""
    n_kinds = len(KIND_NAMES)
    counts = np.bincount(line_basket * n_kinds + line_kind, minlength=n_baskets * n_kinds).reshape(
        n_baskets, n_kinds
    )
    top = counts.argmax(axis=1)
    share = counts.max(axis=1) / np.maximum(counts.sum(axis=1), 1)
    return np.where(share >= DOMINANCE, top, n_kinds)


def price_sensitivity(line_basket: np.ndarray, line_tier: np.ndarray, n_baskets: int) -> np.ndarray:
    """Index into PRICE_SENSITIVITY_NAMES per basket from its lines' price tiers."""
    n = np.bincount(line_basket, minlength=n_baskets)
    score = np.bincount(line_basket, weights=line_tier - 1.0, minlength=n_baskets) / np.maximum(n, 1)
    return np.where(score < LA_CUT, 0, np.where(score > UM_CUT, 2, 1))


def mask_unknown(labels: np.ndarray, unknown_code: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Replace a random ``share`` of labels by ``unknown_code`` ("XX")."""
    return np.where(rng.random(len(labels)) < share, unknown_code, labels)
