"""Configuration of the retail market and of the shaped reward (one dataclass each, passed down)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Integral, Real


@dataclass(frozen=True)
class RewardWeights:
    """reward = profit / profit_scale - boundary x penalty + diversity x bonus + alignment x alignment.

    ``profit_scale`` is the managed products' expected weekly gross profit at reference prices, so a week
    at historical pricing earns a little under 1 (0.73 in the shipped scenario's evaluation: its orders
    lose demand to stock-outs, and stock costs holding). The bonuses lie in [0, 1]; the penalty counts prices (at most
    2 per managed price; ``RetailSimEnv`` docstring)."""

    profit: float = 1.0
    boundary: float = 0.1
    """Weight of the boundary penalty: per managed price, its proximity to a bound over the outer 5% of
    its range (0..1) plus 1 when its discounted price is below unit cost (a price violation)."""
    diversity: float = 0.05
    """Weight of the diversity bonus: spread of the managed products' price positions (one move for
    every product earns nothing)."""
    alignment: float = 0.05
    """Weight of inventory alignment: min(stock, demand) / max(stock, demand) averaged over products."""

    def __post_init__(self) -> None:
        bad = [f"{name}={getattr(self, name)!r}" for name in ("profit", "boundary", "diversity", "alignment")
               if not is_finite_number(getattr(self, name))]  # fmt: skip
        if bad:  # a string weight would fail at the first step, an infinite one give NaN rewards
            raise ValueError(f"RewardWeights: {', '.join(bad)} must be a finite number")

    def signed(self) -> dict[str, float]:
        """Each reward component's weight as it enters the reward, the penalty's negative; keyed like the
        ``reward_<term>`` info entries, so ``sum(w * info[f"reward_{t}"] for t, w in signed().items())``
        is the reward."""
        return {"profit": self.profit, "boundary_penalty": -self.boundary, "diversity_bonus": self.diversity,
                "inventory_alignment": self.alignment}  # fmt: skip


def is_whole_number(value: object) -> bool:
    """An integer, Python's or numpy's (both are ``Integral``); not a bool, a float like 1.5 or a string."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    """A real, finite number: Python's or numpy's, a 0-d array included; not a bool, a string or None."""
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # numpy scalars and 0-d arrays
        value = value.item()
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


MAX_PROMO_DEPTH = 0.9
"""The deepest ``EnvConfig.max_promo_depth``: nearer 1 the paid price nears 0 and price ** elasticity
(elasticities reach -3) sends a week's demand into the millions (0.99: 5.1M units of one product)."""


@dataclass(frozen=True)
class EnvConfig:
    """The store operations around the demand: episode, promotions, ordering and costs."""

    episode_length: int = 52
    """Weekly steps per episode (truncation, not termination)."""
    lead_time: int = 1
    """Weeks between an order and its arrival (0: arrives before the week's sales)."""
    max_promo_depth: float = 0.4
    """The deepest promotion an action can set (a share of the shelf price), at most ``MAX_PROMO_DEPTH``."""
    min_promo_depth: float = 0.1
    """The shallowest promotion: a promotion field above 0 maps onto [min, max] depth (a 1% "promotion"
    that earns the whole lift would be an artefact, not a promotion). The learned market needs it above
    the scenario's promotion threshold (``ResponseConfig.promo_threshold``, 5%): its lifts were estimated
    on deeper drops."""
    promo_fatigue: float = 0.5
    """Promotion fatigue: the lift of a product promoted in k of the last ``promo_memory`` weeks is
    lift ** exp(-promo_fatigue x k) (shoppers' reference prices adapt to repeated discounts; 0: none).
    A market rule applied in both demand modes: the generator's truth has no fatigue of its own."""
    promo_memory: int = 8
    """Weeks of promotion history the fatigue counts."""
    max_order_multiple: float = 2.0
    """Orders range over [0, max_order_multiple] x the forecast of next week's demand."""
    initial_stock_weeks: float = 2.0
    """Stock at reset, in weeks of demand at reference prices (the pipeline holds one week per lead week)."""
    holding_rate: float = 0.02
    """Weekly holding cost per unit left in stock, as a share of its unit cost."""
    stockout_rate: float = 0.1
    """Cost of each unit of demand lost to a stock-out, as a share of its effective price (goodwill)."""
    substitution: float = 0.0
    """Share of demand lost to a stock-out that moves to managed products of the same sub-commodity
    (PROD_CODE_10) with stock left, spread evenly over them (0: none). What a sibling sells that way is
    its revenue and no longer counts as lost (``stockout_units``, stock-out cost)."""
    edge_margin: float = 0.05
    """A price within this share of its range from a bound counts as at the edge."""
    seasons: bool = True
    """Learned demand: multiply expected units by the category's week-of-year index the bundle holds
    (``world_model.response.season``; a bundle without one has no seasons). The oracle always has the
    generator's own."""
    reward: RewardWeights = field(default_factory=RewardWeights)

    def __post_init__(self) -> None:
        counts = {name: getattr(self, name) for name in ("episode_length", "lead_time", "promo_memory")}
        fractional = [f"{name}={value!r}" for name, value in counts.items() if not is_whole_number(value)]
        if fractional:
            raise ValueError(f"EnvConfig: {', '.join(fractional)} must be a whole number")
        if isinstance(self.reward, dict):  # as JSON gives it (--env-kwargs' "config")
            object.__setattr__(self, "reward", RewardWeights(**self.reward))
        if not isinstance(self.reward, RewardWeights):
            raise ValueError(f"EnvConfig: reward must be RewardWeights or a dict of its fields, got {self.reward!r}")
        rates = ("max_promo_depth", "min_promo_depth", "promo_fatigue", "max_order_multiple", "initial_stock_weeks",
                 "holding_rate", "stockout_rate", "substitution", "edge_margin")  # fmt: skip
        infinite = [f"{name}={getattr(self, name)!r}" for name in rates if not is_finite_number(getattr(self, name))]
        if infinite:  # inf x 0 is NaN: an infinite rate turns the first reward into NaN
            raise ValueError(f"EnvConfig: {', '.join(infinite)} must be a finite number")
        checks = {"episode_length": self.episode_length >= 1, "lead_time": self.lead_time >= 0,
                  "max_promo_depth": 0 <= self.max_promo_depth <= MAX_PROMO_DEPTH,
                  "max_order_multiple": self.max_order_multiple > 0,
                  "min_promo_depth": 0 <= self.min_promo_depth <= self.max_promo_depth,
                  "promo_fatigue": self.promo_fatigue >= 0, "promo_memory": self.promo_memory >= 1,
                  "substitution": 0 <= self.substitution <= 1, "edge_margin": 0 <= self.edge_margin < 0.5,
                  "initial_stock_weeks": self.initial_stock_weeks >= 0, "holding_rate": self.holding_rate >= 0,
                  "stockout_rate": self.stockout_rate >= 0}  # fmt: skip
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"EnvConfig: invalid {', '.join(f'{b}={getattr(self, b)!r}' for b in bad)}")
