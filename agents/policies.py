"""Baseline policies, batched over environment copies.

A policy maps the market's state to flat actions [B, M*K*3] in [-1, 1] (``RetailSimEnv``'s layout) through
``act(sim, observation)``, where ``sim`` is the environment's ``BatchedRetailSim``: baselines read prices,
costs, stock and forecasts from it directly (they are rules, not learners), and the same object serves
the single env (B = 1) and the vector env.

- ``HistoricalPricing``: the store's reference prices, no promotions, orders up to the forecast;
- ``CostPlus``: unit cost x (1 + markup), clipped to the price bounds, no promotions, orders up to;
- ``RandomPolicy``: uniform actions (``reset()`` restarts its stream: every evaluation run draws the same);
- ``MyopicGreedy``: each week, per product, the price and promotion depth on a grid that maximize this
  week's expected gross profit under the model's forecast (ignores stock, carry-over and the future);
  depths are clamped to the env's [min_promo_depth, max_promo_depth], the depths the action decodes to;
- ``SSInventory``: historical prices with an (s, S) rule: when stock + on order falls below the lead
  time's cover + s weeks of forecast, order up to the cover + S weeks (safety stock, in batches).

Order-up-to (``BatchedRetailSim.order_up_to``): stock + on order up to (lead time + 1) weeks of forecast,
the smallest cover that avoids a stock-out at forecast demand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retailsim_env.core import BatchedRetailSim


class HistoricalPricing:
    name = "historical"

    def act(self, sim: BatchedRetailSim, observation: np.ndarray) -> np.ndarray:
        market = sim.market
        price = np.broadcast_to(market.reference_price, market.stock.shape)
        return sim.encode(price, np.zeros_like(market.stock), sim.order_up_to())


@dataclass
class CostPlus:
    markup: float = 0.5
    name: str = "cost_plus"

    def act(self, sim: BatchedRetailSim, observation: np.ndarray) -> np.ndarray:
        market = sim.market
        price = np.clip(market.unit_cost * (1.0 + self.markup), market.price_min, market.price_max)
        return sim.encode(np.broadcast_to(price, market.stock.shape), np.zeros_like(market.stock), sim.order_up_to())


@dataclass
class RandomPolicy:
    seed: int = 0
    name: str = "random"

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Restart the action stream from ``seed`` (``agents.evaluate.run_episodes`` does, before each run)."""
        self.rng = np.random.default_rng(self.seed)

    def act(self, sim: BatchedRetailSim, observation: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, (sim.market.n_copies, sim.action_size)).astype(np.float32)


@dataclass
class MyopicGreedy:
    """Grid search of this week's expected gross profit, per product (``price_points`` x ``depths``; a depth
    above 0 is clamped to the env's [min_promo_depth, max_promo_depth], as the action decodes it)."""

    price_points: int = 11
    depths: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4)
    name: str = "myopic_greedy"

    def act(self, sim: BatchedRetailSim, observation: np.ndarray) -> np.ndarray:
        market = sim.market
        shape = market.stock.shape
        best_profit = np.full(shape, -np.inf)
        best_price, best_depth = np.zeros(shape), np.zeros(shape)
        low, high = sim.config.min_promo_depth, sim.config.max_promo_depth
        depths = dict.fromkeys(min(max(depth, low), high) if depth > 0 else 0.0 for depth in self.depths)
        for position in np.linspace(0.0, 1.0, self.price_points):
            price = np.broadcast_to(np.round(market.price_min + position * (market.price_max - market.price_min), 2), shape)
            for depth in depths:
                depth_grid = np.full(shape, depth)
                units = market.expected_units(price, depth_grid)
                profit = units * (price * (1.0 - depth_grid) - market.unit_cost)
                better = profit > best_profit
                best_profit = np.where(better, profit, best_profit)
                best_price, best_depth = np.where(better, price, best_price), np.where(better, depth_grid, best_depth)
        return sim.encode(best_price, best_depth, sim.order_up_to())


@dataclass
class SSInventory:
    """Historical prices; (s, S) ordering in weeks of forecast beyond the lead time: reorder when stock +
    on order falls below (lead + 1 + s_weeks) weeks of forecast, up to (lead + 1 + S_weeks) weeks."""

    s_weeks: float = 0.5
    S_weeks: float = 1.5
    name: str = "s_S_inventory"

    def act(self, sim: BatchedRetailSim, observation: np.ndarray) -> np.ndarray:
        market = sim.market
        cover = sim.config.lead_time + 1
        position = market.stock + sim.on_order()
        below = position < (cover + self.s_weeks) * market.forecast
        units = np.where(below, np.clip((cover + self.S_weeks) * market.forecast - position, 0.0, None), 0.0)
        price = np.broadcast_to(market.reference_price, market.stock.shape)
        return sim.encode(price, np.zeros_like(market.stock), sim.order_fraction_for(units))


BASELINES = {policy.name: policy for policy in (HistoricalPricing(), CostPlus(), RandomPolicy(), MyopicGreedy(), SSInventory())}
"""The baselines ``retailsim agents evaluate`` runs beside a trained policy, by name."""
