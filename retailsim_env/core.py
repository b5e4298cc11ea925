"""What every environment shares: action decoding, observations and the shaped reward over B copies.

``BatchedRetailSim`` wraps a ``RetailMarket`` with the flat action layout of ``RetailSimEnv`` (its class
docstring documents the spaces); the single env is B = 1, the vector envs B = n, the PettingZoo envs
split the same arrays between agents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retailsim_env.config import EnvConfig
from retailsim_env.market import RetailMarket, WeekResult
from retailsim_env.scenario import Scenario

ACTION_FIELDS = ("price", "promo", "order")
PRODUCT_FEATURES = ("price_ratio", "promo_depth", "stock", "last_units", "forecast", "on_order")
GLOBAL_FEATURES = ("week_sin", "week_cos", "episode_progress")
OBSERVATION_CLIP = 1e3


class InvalidActionError(ValueError):
    """An action with NaN or inf entries, or of the wrong shape."""


def check_action_shape(action: np.ndarray, shape: tuple[int, ...], name: str = "action") -> np.ndarray:
    """``action`` as float64, or ``InvalidActionError`` naming it (``name``: an agent's, a Dict field's) and
    the shape the caller takes (each env checks its own: the single env's is unbatched, so the batch's
    shape would mislead)."""
    action = np.asarray(action, dtype=np.float64)
    if action.shape != shape:
        raise InvalidActionError(f"{name}: expected shape {shape}, got {action.shape}")
    return action


@dataclass
class DecodedAction:
    """Per copy, store and product [B, M, K]: shelf price, promotion depth, order units, and the price's
    position in its range in [-1, 1]; ``clipped`` [B] counts entries outside [-1, 1] that were clipped."""

    price: np.ndarray
    depth: np.ndarray
    order_fraction: np.ndarray
    position: np.ndarray
    clipped: np.ndarray


@dataclass
class WeekOutcome:
    """What ``BatchedRetailSim.advance`` returns for one week of every copy: the decoded action, the
    market's result, the reward components per store [B, M] (``store_reward_terms``) and over all
    managed stores [B] (``reward_terms``), and the info arrays."""

    decoded: DecodedAction
    result: WeekResult
    store_terms: dict[str, np.ndarray]
    terms: dict[str, np.ndarray]
    info: dict[str, np.ndarray]


class BatchedRetailSim:
    """B copies of the market with decoding, observations and rewards (module docstring)."""

    def __init__(self, scenario: Scenario, store_rows: list[int], product_rows: np.ndarray, config: EnvConfig,
                 demand: str = "learned", device: str = "auto", propensities: str = "weekly") -> None:  # fmt: skip
        self.config = config
        self.market = RetailMarket(scenario, store_rows, product_rows, config, demand=demand, device=device,
                                   propensities=propensities)  # fmt: skip
        self.first_monday = np.datetime64(scenario.meta["calendar"]["first_monday"])

    @property
    def shape(self) -> tuple[int, int]:
        return self.market.shape

    @property
    def action_size(self) -> int:
        m, k = self.shape
        return m * k * len(ACTION_FIELDS)

    @property
    def observation_size(self) -> int:
        m, k = self.shape
        return m * k * len(PRODUCT_FEATURES) + len(GLOBAL_FEATURES)

    # ------------------------------------------------------------------ actions
    def decode(self, action: np.ndarray) -> DecodedAction:
        """Flat actions [B, M*K*3] in [-1, 1] (layout: store, product, field) to prices, depths, orders."""
        action = check_action_shape(action, (self.market.n_copies, self.action_size))
        n = len(action)
        if not np.isfinite(action).all():
            raise InvalidActionError("action: contains NaN or inf")
        clipped = ((action < -1) | (action > 1)).sum(1)
        m, k = self.shape
        a = np.clip(action, -1.0, 1.0).reshape(n, m, k, len(ACTION_FIELDS))
        market = self.market
        price = market.price_min + (a[..., 0] + 1.0) / 2.0 * (market.price_max - market.price_min)
        low, high = self.config.min_promo_depth, self.config.max_promo_depth
        depth = np.where(a[..., 1] > 0, low + (high - low) * a[..., 1], 0.0)
        return DecodedAction(np.round(price, 2), depth, (a[..., 2] + 1.0) / 2.0, a[..., 0], clipped)

    def encode(self, price: np.ndarray, depth: np.ndarray, order_fraction: np.ndarray) -> np.ndarray:
        """The flat action [B, M*K*3] that decodes to ``price``, ``depth`` and ``order_fraction`` [B, M, K]
        (the inverse of ``decode`` up to clipping and rounding to cents)."""
        market = self.market
        span = np.maximum(market.price_max - market.price_min, 1e-9)
        position = 2.0 * (np.asarray(price) - market.price_min) / span - 1.0
        low, high = self.config.min_promo_depth, self.config.max_promo_depth
        depth = np.asarray(depth, dtype=np.float64)
        promo = np.where(depth > 0, np.maximum((depth - low) / max(high - low, 1e-9), 1e-6), -1.0)
        order = 2.0 * np.asarray(order_fraction) - 1.0
        stacked = np.stack(np.broadcast_arrays(position, promo, order), axis=-1)
        return np.clip(stacked, -1, 1).reshape(len(stacked), -1).astype(np.float32)

    # ------------------------------------------------------------------ episodes
    def reset(self, copies: np.ndarray, rngs: list[np.random.Generator],
              start_weeks: Sequence[int | None] | np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """The observations [len(copies), O] of new episodes in ``copies`` (``RetailMarket.reset``)."""
        if self.market.n_copies == 0:
            raise RuntimeError("allocate the copies first")
        self.market.reset(copies, rngs, start_weeks)
        return self.observe()[copies]

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(observations [B, O], rewards [B], truncated [B], info arrays) after one week of every copy."""
        week = self.advance(action)
        reward = sum(weight * week.terms[term] for term, weight in self.config.reward.signed().items())
        truncated = self.market.t >= self.config.episode_length
        return self.observe(), reward.astype(np.float64), truncated, week.info

    def advance(self, action: np.ndarray) -> WeekOutcome:
        """One week of every copy under flat ``action`` [B, A], with its reward components per store and in
        all, which ``step`` and the multi-agent view each weigh into rewards."""
        decoded = self.decode(action)
        market = self.market
        result = market.step(decoded.price, decoded.depth, market.order_units(decoded.order_fraction))
        store_terms = self.store_reward_terms(result, decoded)
        terms = self.reward_terms(result, store_terms)
        return WeekOutcome(decoded, result, store_terms, terms, self.info(result, decoded, terms))

    # ------------------------------------------------------------------ observation
    def week_of_year_angle(self) -> np.ndarray:
        """[B] 2 pi x day of year / 365.25 of each copy's current week's Monday."""
        mondays = self.first_monday + 7 * (self.market.week - 1)
        day = (mondays - mondays.astype("datetime64[Y]")).astype(np.int64)
        return 2 * np.pi * day / 365.25

    def observe(self) -> np.ndarray:
        """[B, O] float32: per store and product the ``PRODUCT_FEATURES``, then the ``GLOBAL_FEATURES``."""
        market = self.market
        scale = market.scale
        per_product = np.stack([
            market.price / market.reference_price - 1.0,
            market.depth / max(self.config.max_promo_depth, 1e-9),
            market.stock / scale,
            market.last_sold / scale,
            market.forecast / scale,
            self.on_order() / scale,
        ], axis=-1)  # fmt: skip
        angle = self.week_of_year_angle()
        progress = market.t / self.config.episode_length
        glob = np.stack([np.sin(angle), np.cos(angle), progress], axis=1)
        out = np.concatenate([per_product.reshape(len(glob), -1), glob], axis=1)
        return np.clip(out, -OBSERVATION_CLIP, OBSERVATION_CLIP).astype(np.float32)

    # ------------------------------------------------------------------ reward
    def edge(self, position: np.ndarray) -> np.ndarray:
        """0 inside the range, rising linearly to 1 over the outer ``edge_margin`` of it at either bound."""
        inner = 1.0 - 2.0 * self.config.edge_margin
        return np.clip((np.abs(position) - inner) / max(1.0 - inner, 1e-9), 0.0, 1.0)

    def violations(self, decoded: DecodedAction) -> np.ndarray:
        """[B, M, K] discounted shelf prices below unit cost (selling at a loss)."""
        return decoded.price * (1.0 - decoded.depth) < self.market.unit_cost - 1e-9

    def store_reward_terms(self, result: WeekResult, decoded: DecodedAction) -> dict[str, np.ndarray]:
        """Each reward component per copy and store [B, M], profit over the store's own profit scale
        (the competing stores' rewards)."""
        market = self.market
        boundary = self.edge(decoded.position).sum(2) + self.violations(decoded).sum(2)
        diversity = decoded.position.std(axis=2) if decoded.position.shape[2] > 1 else np.zeros(boundary.shape)
        available = result.sold + market.stock
        high = np.maximum(available, result.demand)
        alignment = np.where(high > 0, np.minimum(available, result.demand) / np.maximum(high, 1e-9), 1.0).mean(2)
        return {"profit": result.profit.sum(2) / market.store_profit_scale, "boundary_penalty": boundary,
                "diversity_bonus": np.clip(diversity, 0.0, 1.0), "inventory_alignment": alignment}  # fmt: skip

    def reward_terms(self, result: WeekResult, terms: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each reward component [B] over all managed stores (``RetailSimEnv`` docstring) from the per-store
        ``terms`` (``store_reward_terms``): profit over the total profit scale, penalties summed, bonuses
        averaged."""
        return {"profit": result.profit.sum((1, 2)) / self.market.profit_scale,
                "boundary_penalty": terms["boundary_penalty"].sum(1), "diversity_bonus": terms["diversity_bonus"].mean(1),
                "inventory_alignment": terms["inventory_alignment"].mean(1)}  # fmt: skip

    def order_up_to(self, weeks: float | None = None) -> np.ndarray:
        """Order fractions [B, M, K] that bring stock + on order up to ``weeks`` of forecast (default lead
        time + 1: the smallest cover without a stock-out at forecast demand)."""
        market = self.market
        weeks = self.config.lead_time + 1 if weeks is None else weeks
        return self.order_fraction_for(np.clip(weeks * market.forecast - market.stock - self.on_order(), 0.0, None))

    def on_order(self) -> np.ndarray:
        """[B, M, K] units ordered and not yet arrived."""
        return self.market.pipeline.sum(1) if self.config.lead_time else np.zeros_like(self.market.stock)

    def order_fraction_for(self, units: np.ndarray) -> np.ndarray:
        """The order field value in [0, 1] that orders ``units`` [B, M, K] (clipped to the largest order)."""
        return np.clip(units / np.maximum(self.config.max_order_multiple * self.market.forecast, 1e-9), 0.0, 1.0)

    def info(self, result: WeekResult, decoded: DecodedAction, terms: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-copy figures [B] of the week (the keys ``RetailSimEnv`` documents)."""
        axes = (1, 2)
        return {
            "week": self.market.week - 1, "revenue": result.revenue.sum(axes), "profit": result.profit.sum(axes),
            "units": result.sold.sum(axes), "demand": result.demand.sum(axes), "stockout_units": result.lost.sum(axes),
            "stockouts": (result.sold < result.demand).sum(axes), "price_violations": self.violations(decoded).sum(axes),
            "edge_share": (np.abs(decoded.position) > 1.0 - 2.0 * self.config.edge_margin).mean(axes),
            "promo_share": (decoded.depth > 0).mean(axes), "clipped_actions": decoded.clipped,
            "visits": result.visits.sum(1),
            "holding_cost": result.holding_cost.sum(axes), "stockout_cost": result.stockout_cost.sum(axes),
            **{f"reward_{name}": value for name, value in terms.items()},
        }  # fmt: skip
