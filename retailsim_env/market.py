"""The batched weekly market step: prices, promotions and orders in; sales, stock and money out.

``RetailMarket`` holds B copies of one market (M managed stores x K managed products each) as arrays with
a leading copy axis; every environment (single, vector, multi-agent) is a view of it, so a vector step
is one call here and one model forward in the demand backend. A week, per copy:

1. orders placed ``lead_time`` weeks ago arrive; this week's orders join the pipeline (lead 0: at once);
2. demand is drawn at the week's shelf prices and promotion depths (``retailsim_env.demand``), the lift of
   a product promoted in k of the last ``promo_memory`` weeks raised to exp(-promo_fatigue x k);
3. sales = min(demand, stock); with ``substitution`` > 0 a share of the lost units moves to managed
   products of the same sub-commodity that still have stock (and is then sold there, not lost);
4. money: revenue = sold x price x (1 - depth); cost of goods = sold x unit cost; holding = stock left
   x unit cost x holding_rate; stock-out cost = lost units x effective price x stockout_rate;
5. the forecast of next week's demand at the prices just set (what the observation shows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retailsim_env.config import EnvConfig, is_whole_number
from retailsim_env.demand import LearnedDemand, OracleDemand
from retailsim_env.scenario import Scenario, widen_price_bounds

DEMAND_MODES = ("learned", "oracle")


@dataclass
class WeekResult:
    """One week of every copy; arrays [B, M, K] unless noted."""

    demand: np.ndarray
    sold: np.ndarray
    """Units sold: of the product's own demand, plus what its siblings' shoppers took instead (substitution)."""
    lost: np.ndarray
    """Units of the product's demand neither sold nor taken as a sibling (sold + lost sums to demand)."""
    revenue: np.ndarray
    cost_of_goods: np.ndarray
    holding_cost: np.ndarray
    stockout_cost: np.ndarray
    visits: np.ndarray
    """[B, M] trips to each managed store (oracle mode: every visit, also those that bought nothing managed)."""

    @property
    def profit(self) -> np.ndarray:
        return self.revenue - self.cost_of_goods - self.holding_cost - self.stockout_cost


class RetailMarket:
    """B copies of the managed stores' market (module docstring)."""

    def __init__(self, scenario: Scenario, store_rows: list[int], product_rows: np.ndarray, config: EnvConfig,
                 demand: str = "learned", device: str = "auto", propensities: str = "weekly") -> None:  # fmt: skip
        if demand not in DEMAND_MODES:
            raise ValueError(f"demand must be one of {DEMAND_MODES}, got {demand!r}")
        self.scenario, self.config = scenario, config
        self.store_rows, self.product_rows = list(store_rows), np.asarray(product_rows, dtype=np.int64)
        catalog = scenario.catalog_by_row.loc[self.product_rows]
        self.product_codes = catalog["PROD_CODE"].tolist()
        self.store_codes = scenario.stores_by_row.loc[self.store_rows, "STORE_CODE"].tolist()
        self.unit_cost = catalog["unit_cost"].to_numpy(np.float64)
        reference = scenario.reference_prices[np.ix_(self.store_rows, self.product_rows)].astype(np.float64)
        self.reference_price = reference  # [M, K] each store's own latest regular price
        # [M, K] the catalog's bounds, widened where a store's reference lies near or outside them (they are
        # set around the product's median reference over stores): historical pricing must be a price the
        # actions can set, with room on either side
        self.price_min, self.price_max = widen_price_bounds(catalog["price_min"].to_numpy(np.float64),
                                                            catalog["price_max"].to_numpy(np.float64), reference)  # fmt: skip
        classes = catalog["PROD_CODE_10"].to_numpy()
        same = classes[:, None] == classes[None, :]
        np.fill_diagonal(same, False)
        self.siblings = same.astype(np.float64)  # [K, K]
        if demand == "oracle":
            self.backend = OracleDemand(scenario, self.store_rows, self.product_rows)
        else:
            threshold = scenario.response.config.promo_threshold  # the estimated lifts are of deeper drops
            if config.min_promo_depth <= threshold:
                raise ValueError(f"config: min_promo_depth {config.min_promo_depth:g} must exceed the scenario's "
                                 f"promotion threshold {threshold:g} (the estimated lifts are of deeper drops)")  # fmt: skip
            self.backend = LearnedDemand(scenario, self.store_rows, self.product_rows, device=device,
                                         propensities=propensities, seasons=config.seasons)  # fmt: skip
        self.data_weeks = int(scenario.meta["calendar"]["weeks"])
        self.reference_units = self.backend.reference_units(max(self.data_weeks // 2, 1), self.reference_price)
        self.scale = np.maximum(self.reference_units, 1.0)  # [M, K] units that normalize observations
        margin = ((self.reference_price - self.unit_cost) * self.reference_units).sum(1)  # [M]
        self.store_profit_scale = np.maximum(margin, 1.0)
        """[M] each store's expected weekly gross profit at reference prices (at least 1)."""
        self.profit_scale = float(max(margin.sum(), 1.0))
        self.n_copies = 0
        self.rngs: list[np.random.Generator] = []

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.store_rows), len(self.product_rows)

    def allocate(self, n_copies: int) -> None:
        """(Re)size the state arrays for ``n_copies`` copies."""
        m, k = self.shape
        self.n_copies = n_copies
        self.week = np.ones(n_copies, dtype=np.int64)
        self.t = np.zeros(n_copies, dtype=np.int64)
        zeros = lambda *extra: np.zeros((n_copies, *extra, m, k))  # noqa: E731
        self.stock, self.last_sold, self.forecast = zeros(), zeros(), zeros()
        self.pipeline = zeros(max(self.config.lead_time, 1))
        self.price, self.depth = zeros(), zeros()
        self.promo_history = np.zeros((n_copies, self.config.promo_memory, m, k), dtype=bool)
        self.rngs = [np.random.default_rng(0) for _ in range(n_copies)]
        self.started = np.zeros(n_copies, dtype=bool)  # which copies were reset: a step needs them all

    def reset(self, copies: np.ndarray, rngs: list[np.random.Generator],
              start_weeks: Sequence[int | None] | np.ndarray | None = None) -> None:  # fmt: skip
        """Start new episodes in ``copies``, each drawing from its own generator; a start week is drawn
        from the data's calendar unless given (per copy: None draws; data week indices: 1 is the data's
        first week; later weeks than the data's run on, the calendar continuing)."""
        copies = np.asarray(copies, dtype=np.int64)
        weeks = [None] * len(copies) if start_weeks is None else list(start_weeks)
        fractional = [w for w in weeks if w is not None and not is_whole_number(w)]
        if fractional:  # int() would have floored 1.5 and parsed "3" silently
            bad = fractional[0].item() if isinstance(fractional[0], np.generic) else fractional[0]
            raise ValueError(f"start_week must be a whole data week index >= 1, got {bad!r}")
        given = [int(w) for w in weeks if w is not None]
        if given and min(given) < 1:
            raise ValueError(f"start_week must be a data week index >= 1, got {min(given)}")
        for i, c in enumerate(copies):
            self.rngs[c] = rngs[i]
            self.week[c] = int(rngs[i].integers(1, self.data_weeks + 1)) if weeks[i] is None else int(weeks[i])
        self.started[copies] = True
        self.t[copies] = 0
        self.price[copies] = self.reference_price
        self.depth[copies] = 0.0
        self.promo_history[copies] = False
        self.stock[copies] = np.round(self.reference_units * self.config.initial_stock_weeks)
        self.pipeline[copies] = np.round(self.reference_units) if self.config.lead_time else 0.0
        self.last_sold[copies] = 0.0
        self.backend.reset(copies, self.n_copies, [self.rngs[c] for c in copies])
        self.forecast[copies] = self.backend.forecast(self.week[copies], self.price[copies], self.depth[copies])

    def lift_scale(self) -> np.ndarray:
        """[B, M, K] exponent of each product's promotion lift given the copies' promoted weeks among the
        last ``promo_memory``."""
        return np.exp(-self.config.promo_fatigue * self.promo_history.sum(1))

    def expected_units(self, price: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """[B, M, K] expected demand this week at shelf ``price`` and ``depth`` (fatigue included): what a
        planning policy may query."""
        return self.backend.forecast(self.week, price, depth, self.lift_scale())

    def order_units(self, order_fraction: np.ndarray) -> np.ndarray:
        """Units ordered for ``order_fraction`` in [0, 1] of the largest order (``max_order_multiple`` x
        the forecast), whole units."""
        return np.round(order_fraction * self.config.max_order_multiple * self.forecast)

    def _substitute(self, sold: np.ndarray, lost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``sold`` and ``lost`` [B, M, K] after a ``substitution`` share of each product's lost units
        moved to its siblings with stock left, spread evenly over them. A sibling takes whole units, at most
        its spare stock; where it cannot take all that was sent, each source gets back the same share of
        what it sent. The units a sibling took are no longer lost at their source, so sold + lost = demand
        still holds; lost may then be fractional (a source's share of a sibling's whole units)."""
        spare = self.stock - sold
        open_siblings = self.siblings * (spare > 0)[..., None, :]  # [B, M, K from, K to]
        share = open_siblings / np.maximum(open_siblings.sum(-1, keepdims=True), 1.0)
        sent = self.config.substitution * lost[..., :, None] * share  # elementwise: each copy as if alone
        wanted = sent.sum(-2)
        moved = np.minimum(np.floor(wanted), spare)
        taken = np.divide(moved, wanted, out=np.zeros_like(moved), where=wanted > 0)
        return sold + moved, np.maximum(lost - (sent * taken[..., None, :]).sum(-1), 0.0)

    def step(self, price: np.ndarray, depth: np.ndarray, order: np.ndarray) -> WeekResult:
        """Advance every copy one week with shelf ``price``, promotion ``depth`` and ``order`` units [B, M, K]."""
        if not self.started.all():
            raise RuntimeError(f"step before reset: call reset() first (copies {np.flatnonzero(~self.started).tolist()} "
                               "never reset)")  # fmt: skip
        config = self.config
        price, depth = np.asarray(price, np.float64).copy(), np.asarray(depth, np.float64).copy()
        demand, visits = self.backend.sample(self.week, price, depth, self.rngs, self.lift_scale())  # first: a
        self.price, self.depth = price, depth  # draw that raises leaves stock, orders and prices as they were
        if config.lead_time:
            self.stock += self.pipeline[:, 0]
            self.pipeline = np.roll(self.pipeline, -1, axis=1)
            self.pipeline[:, -1] = order
        else:
            self.stock += order
        self.promo_history = np.roll(self.promo_history, -1, axis=1)
        self.promo_history[:, -1] = self.depth > 0
        sold = np.minimum(demand, self.stock)
        lost = demand - sold
        if config.substitution > 0 and lost.any():
            sold, lost = self._substitute(sold, lost)
        self.stock -= sold
        effective = self.price * (1.0 - self.depth)
        result = WeekResult(
            demand=demand, sold=sold, lost=lost, revenue=sold * effective, cost_of_goods=sold * self.unit_cost,
            holding_cost=self.stock * self.unit_cost * config.holding_rate,
            stockout_cost=lost * effective * config.stockout_rate, visits=visits,
        )  # fmt: skip
        self.last_sold = sold
        self.week += 1
        self.t += 1
        self.forecast = self.backend.forecast(self.week, self.price, self.depth, self.lift_scale())
        return result
