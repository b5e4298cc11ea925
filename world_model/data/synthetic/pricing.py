"""The generator's own price and promotion calendar.

Real LGSR prices barely move (a median product has one price), which leaves elasticities
unidentified. The synthetic calendar therefore varies prices on purpose, in three independent ways
that a demand model can exploit:

* cross-section: a store price index (0.95..1.05) scales all shelf prices of a store;
* regular price changes: each week each product changes its regular price for good with probability
  ``price_change_rate / 52``, by a national log-step ``N(0, price_change_sd)``;
* promotions: each (region, product, week) is on promotion with probability ``promo_share``, with a
  depth uniform in ``promo_depth_range`` rounded to 5%, independently across regions and weeks.

The shelf price of product p at store s in week w is
``round(round(base_p * index_s * regular_{w,p}, 2) * (1 - depth_{region(s),p,w}), 2)`` (cents, >= 0.01).
Promotions and price changes are drawn from generators seeded by (seed, week index), so the schedule
of the first weeks does not depend on how many weeks a market runs.
"""

from __future__ import annotations

import numpy as np

from .config import MarketConfig

STREAM_PROMOTIONS = 7
STREAM_PRICE_CHANGES = 8


def regular_price_path(config: MarketConfig, n_products: int, n_weeks: int) -> np.ndarray:
    """[n_weeks, P] multiplier of the base price from permanent price changes (1.0 before any change).

    Each week w >= 1 draws its changes from a generator seeded by (seed, w), so the path of the first
    weeks does not depend on how many weeks are generated.
    """
    log_step = np.zeros((n_weeks, n_products))
    p_change = min(config.price_change_rate / 52.0, 1.0)
    for week in range(1, n_weeks):
        rng = np.random.default_rng([config.seed, week, STREAM_PRICE_CHANGES])
        changes = rng.random(n_products) < p_change
        log_step[week] = np.where(changes, rng.normal(0.0, config.price_change_sd, size=n_products), 0.0)
    return np.exp(np.cumsum(log_step, axis=0))


def promotion_depths(config: MarketConfig, week_index: int, n_regions: int, n_products: int) -> np.ndarray:
    """[regions, P] promotion depth of each region and product in week ``week_index`` (0 = none)."""
    rng = np.random.default_rng([config.seed, week_index, STREAM_PROMOTIONS])
    on = rng.random((n_regions, n_products)) < config.promo_share
    lo, hi = config.promo_depth_range
    depth = np.round(rng.uniform(lo, hi, size=(n_regions, n_products)) / 0.05) * 0.05
    depth = np.clip(depth, lo, hi)
    return np.where(on, depth, 0.0)


def shelf_prices(
    base_price: np.ndarray, store_index: np.ndarray, regular: np.ndarray, depth: np.ndarray
) -> np.ndarray:
    """[S, P] shelf prices in cents precision from base [P], store index [S], regular [P], depth [S, P]."""
    regular_price = np.round(store_index[:, None] * (base_price * regular)[None, :], 2)
    return np.maximum(np.round(regular_price * (1.0 - depth), 2), 0.01)
