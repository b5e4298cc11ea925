"""The shopper population: segments, store network, repertoire and habits of every customer.

Card holders (named customers) and card-less shoppers share one behaviour model; the card-less ones
("hidden" customers, the last rows of every array) are sized so that about ``anonymous_share`` of
baskets come without a customer, and their baskets are written with empty CUST_CODE/seg_1/seg_2.

Per customer:

* segments ``seg_1`` (CT/BG/AZ/DY) and ``seg_2`` (BU/DI/AT/CZ/FN/EQ, sometimes empty) with the real
  frequencies; seg_1 sets the mean price sensitivity and price-tier taste (BG value, AZ upmarket);
* a store network: a home store plus secondary stores (mostly in the home region), with pull weights
  (home ~82%); the week's store choice multiplies the pull by the store's price level to the power
  ``-eta * price_sensitivity``;
* a visit rate (Gamma distributed, mean ~0.75 visits a week) and mission probabilities;
* a personal repertoire of ``repertoire_size`` products drawn by popularity and tier taste, with Zipf
  preference weights, and the share ``rho`` of expected items that come from it (the rest explores
  the whole catalog by popularity) - this sets the share of a basket's items bought before (~0.68);
* weekday preferences (Monday..Sunday) and a habitual hour (8..21).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .catalog import Catalog
from .config import MarketConfig
from .sampling import gumbel_top_k
from .stores import REGION_NAMES, Stores

SEG1_NAMES: tuple[str, ...] = ("CT", "BG", "AZ", "DY")
SEG1_SHARES = np.array([0.46, 0.28, 0.27, 0.008])
SEG1_PRICE_SENSITIVITY = np.array([1.0, 1.4, 0.7, 1.0])
SEG1_TIER_TASTE = np.array([[0.25, 0.5, 0.25], [0.5, 0.38, 0.12], [0.1, 0.42, 0.48], [0.33, 0.34, 0.33]])
SEG2_NAMES: tuple[str, ...] = ("", "BU", "DI", "AT", "CZ", "FN", "EQ")
SEG2_SHARES = np.array([0.10, 0.34, 0.24, 0.15, 0.14, 0.08, 0.06])
MISSION_NAMES: tuple[str, ...] = ("Top Up", "Small Shop", "Full Shop")
# Real LGSR shopping hours 8..21 (21 also holds the few later visits).
HOURS = np.arange(8, 22, dtype=np.int8)
HOUR_SHARES = np.array(
    [105285, 84512, 122349, 169515, 204725, 236504, 240640, 231606, 219951, 202185, 178220, 153646, 128859,
     241776],
    dtype=float,
)
HOUR_SHARES /= HOUR_SHARES.sum()
_CHUNK = 2048  # customers per chunk in the [customers, stores|products] draws


@dataclass(frozen=True)
class Population:
    """Customer parameters; rows [0, n_named) are card holders, the rest card-less shoppers."""

    n_named: int
    code: np.ndarray  # [N] str, "" for card-less
    seg1: np.ndarray  # [N] int into SEG1_NAMES
    seg2: np.ndarray  # [N] int into SEG2_NAMES (0 = empty)
    price_sensitivity: np.ndarray  # [N] multiplier of the store-choice price sensitivity eta
    tier_taste: np.ndarray  # [N, 3] LA/MM/UM
    visit_rate: np.ndarray  # [N] expected visits per week (before the week's traffic factor)
    mission_probs: np.ndarray  # [N, 3] Top Up, Small Shop, Full Shop
    store_slots: np.ndarray  # [N, K] store index (home first); padded with the home store
    store_pull: np.ndarray  # [N, K] pull weights, 0 on padding
    repertoire: np.ndarray  # [N, R] product index
    repertoire_weight: np.ndarray  # [N, R] preference weights, rows sum to 1
    repertoire_share: np.ndarray  # [N] rho
    weekday_probs: np.ndarray  # [N, 7] Monday..Sunday
    habit_hour: np.ndarray  # [N] int8

    @property
    def n_total(self) -> int:
        return len(self.code)

    @property
    def anonymous(self) -> np.ndarray:
        return np.arange(self.n_total) >= self.n_named


def _customer_codes(n: int, rng: np.random.Generator) -> np.ndarray:
    pool = max(10 * n, 1_000_000)
    numbers = np.sort(rng.choice(pool, size=n, replace=False)) + 100_000
    return np.array([f"CUST{x:010d}" for x in numbers])


def _store_network(
    config: MarketConfig, stores: Stores, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Home store, secondary stores (Gumbel-top-k by traffic, home region favoured) and pulls."""
    n_stores = stores.n_stores
    k = min(config.store_slots, n_stores)
    home = rng.choice(n_stores, size=n, p=stores.traffic / stores.traffic.sum())
    n_second = np.minimum(1 + rng.poisson(max(config.secondary_stores_mean - 1.0, 0.0), size=n), k - 1)
    n_regions = len(REGION_NAMES)
    q = config.same_region_share
    region_bonus = np.log(max(q * (n_regions - 1) / max(1.0 - q, 1e-9), 1e-9))
    slots = np.empty((n, k), dtype=np.int64)
    slots[:, 0] = home
    log_traffic = np.log(stores.traffic)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        logw = np.broadcast_to(log_traffic, (stop - start, n_stores)).copy()
        logw += region_bonus * (stores.region[None, :] == stores.region[home[start:stop], None])
        logw[np.arange(stop - start), home[start:stop]] = -np.inf
        if k > 1:
            slots[start:stop, 1:] = gumbel_top_k(logw, k - 1, rng)
    used = np.arange(k)[None, :] <= n_second[:, None]
    slots = np.where(used, slots, home[:, None])
    m = config.home_store_share
    home_pull = rng.beta(8.0 * m, 8.0 * (1.0 - m), size=n) if 0 < m < 1 else np.full(n, float(m))
    home_pull = np.where(n_second > 0, home_pull, 1.0)
    second = rng.gamma(0.7, size=(n, k)) * used
    second[:, 0] = 0.0
    second_total = second.sum(axis=1, keepdims=True)
    second = np.where(second_total > 0, second / np.where(second_total > 0, second_total, 1.0), 0.0)
    pull = second * (1.0 - home_pull)[:, None]
    pull[:, 0] = home_pull
    return slots, pull


def _repertoires(
    config: MarketConfig, catalog: Catalog, tier_taste: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Repertoire products (by popularity x tier taste, without replacement) and Zipf weights."""
    n = len(tier_taste)
    r = min(config.repertoire_size, catalog.n_products)
    log_pop = np.log(catalog.popularity)
    reps = np.empty((n, r), dtype=np.int64)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        logw = log_pop[None, :] + np.log(tier_taste[start:stop][:, catalog.tier])
        reps[start:stop] = gumbel_top_k(logw, r, rng)
    zipf = (np.arange(r) + 1.0) ** -config.repertoire_zipf
    weight = zipf[None, :] * rng.lognormal(0.0, 0.5, size=(n, r))
    weight /= weight.sum(axis=1, keepdims=True)
    return reps, weight


def build_population(
    config: MarketConfig, catalog: Catalog, stores: Stores, rng: np.random.Generator
) -> Population:
    """Draw the card holders and card-less shoppers of ``config``."""
    n_named = config.customers
    n = n_named + config.hidden_customers
    seg1 = rng.choice(len(SEG1_NAMES), size=n, p=SEG1_SHARES / SEG1_SHARES.sum())
    seg2 = rng.choice(len(SEG2_NAMES), size=n, p=SEG2_SHARES / SEG2_SHARES.sum())
    sensitivity = SEG1_PRICE_SENSITIVITY[seg1] * rng.lognormal(-0.045, 0.3, size=n)
    tier_taste = _dirichlet_rows(20.0 * SEG1_TIER_TASTE[seg1], rng)
    shape = config.visit_rate_shape
    visit_rate = rng.gamma(shape, config.visit_rate / shape, size=n)
    mission_probs = _dirichlet_rows(np.broadcast_to(12.0 * np.asarray(config.mission_shares), (n, 3)), rng)
    slots, pull = _store_network(config, stores, n, rng)
    reps, rep_weight = _repertoires(config, catalog, tier_taste, rng)
    rho_mean, kappa = config.repertoire_share, 20.0
    rho = rng.beta(rho_mean * kappa, (1.0 - rho_mean) * kappa, size=n) if 0 < rho_mean < 1 else np.full(
        n, float(rho_mean)
    )
    weekday_probs = _dirichlet_rows(np.full((n, 7), 3.0), rng)
    habit_hour = HOURS[rng.choice(len(HOURS), size=n, p=HOUR_SHARES)]
    codes = np.concatenate([_customer_codes(n_named, rng), np.full(n - n_named, "")])
    return Population(
        n_named=n_named,
        code=codes,
        seg1=seg1,
        seg2=seg2,
        price_sensitivity=sensitivity,
        tier_taste=tier_taste,
        visit_rate=visit_rate,
        mission_probs=mission_probs,
        store_slots=slots,
        store_pull=pull,
        repertoire=reps,
        repertoire_weight=rep_weight,
        repertoire_share=rho,
        weekday_probs=weekday_probs,
        habit_hour=habit_hour,
    )


def _dirichlet_rows(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Dirichlet draw per row of the concentration matrix ``alpha`` (vectorized via Gammas)."""
    g = rng.gamma(alpha)
    return g / g.sum(axis=1, keepdims=True)
