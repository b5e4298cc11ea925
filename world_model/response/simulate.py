"""Simulated demand: learned purchase propensities times the explicit price and promotion response.

For a store s and the shopping trips of a split (``EvaluationTargets`` with one product or more: every
store visit whose customer has a history), the store-visit model gives each trip's probability ``q_t``
of going to s and the basket model, told the trip goes to s, a distribution over the vocabulary; times
the customer's mean number of distinct products per earlier basket, that is the trip's expected lines of
each product, ``lines_tv``. Neither model sees the week's prices (T4 is the history's prices only), so
the propensities are price-neutral and every price effect comes from the response:

    units_v(prices) = level_v * qbar_v * m_v * sum_t q'_t * lines_tv,
    m_v  = (price_v / ref_v) ** elasticity_c(v) * lift_c(v) ** [promoted_v]          (model.demand_multiplier)
    q'_t = q_t L^-gamma / (q_t L^-gamma + 1 - q_t),   log L = sum_v w_v log(price_v / ref_v)

with ``qbar_v`` the product's mean units per line in training, ``ref_v`` the reference (regular) price,
``w_v`` the product's share of the store's simulated revenue at reference prices and ``gamma`` the
store-choice sensitivity (``StoreResponse``). ``level_v`` is the history level of the store and product
(``world_model.response.history``): the models learned from card holders and from the training weeks'
average prices and promotions, so their units at reference prices are off by a factor per product; with
the level, the units at the training weeks' own prices and promotions average to what the store sold
then (on the earlier 40-week default's work directory, busiest store, training split's trips, top 10
products: 1.04-1.33 times the generator's exact units at reference prices, 0.57-0.99 without;
docs/price_response.md has the test split's). The models run once per store (``StoreDemand``); every
price scenario after that is two matrix-vector products, so demand curves and placebo checks are cheap.
Weekly figures divide by the split's number of weeks: the split's trips are the population of one week
on average. Everything here is an expectation (no sampling), so equal inputs give equal outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import torch

from world_model.data.duckdb_util import sql_string
from world_model.errors import RetailSimError
from world_model.evaluation.targets import EvaluationTargets
from world_model.models.basket import BasketWorldModel
from world_model.models.batches import BatchBuilder, to_device
from world_model.models.predictors import StoreVisitPredictor
from world_model.pipeline.loader import PreparedData
from world_model.pipeline.tensor_cache import PRODUCT_SPECIALS
from world_model.response.history import history_level, history_units_and_multiplier
from world_model.response.model import PriceResponse, demand_multiplier
from world_model.response.season import SeasonIndex, estimate_seasons, week_bins

MIN_STORE_PROBABILITY = 0.01
"""Trips less likely than this to go to the store are left out of its demand (their share is negligible
and the basket model would run on every trip of the split otherwise)."""


@dataclass
class StoreDemand:
    """The price-neutral demand of one store, ready for price scenarios (module docstring)."""

    store_row: int
    visit_probability: np.ndarray
    """[n] q_t of the trips kept."""
    lines: np.ndarray
    """[n, V] expected lines of each product per trip, given the trip goes to this store."""
    units_per_line: np.ndarray
    """[V] qbar_v."""
    elasticity: np.ndarray
    """[V] elasticity of each vocabulary row (0 on PAD/UNK/MASK)."""
    lift: np.ndarray
    """[V] promotion lift of each vocabulary row."""
    choice_sensitivity: float
    weeks: int
    """Weeks of the split the trips come from."""
    reference_price: np.ndarray | None = None
    """[V] ref_v: the regular shelf price the ratios are relative to."""
    revenue_weight: np.ndarray | None = None
    """[V] w_v: shares of the simulated revenue at reference prices (no store-choice tilt when None)."""
    level: np.ndarray | float = 1.0
    """[V] level_v, the history level (1: the models' own level)."""

    def expected_units(self, price_ratio: np.ndarray | float = 1.0, promoted: np.ndarray | bool = False) -> np.ndarray:
        """[V] expected weekly units at ``price_ratio`` = price / reference price (after any discount)
        and the ``promoted`` flags, each [V] or a scalar for every product."""
        n_products = len(self.units_per_line)
        ratio = np.broadcast_to(np.asarray(price_ratio, dtype=np.float64), (n_products,))
        promoted = np.broadcast_to(np.asarray(promoted, dtype=bool), (n_products,))
        multiplier = demand_multiplier(ratio, promoted, self.elasticity, self.lift)
        q = self.visit_probability
        if self.revenue_weight is not None and self.choice_sensitivity > 0:
            tilt = np.exp(-self.choice_sensitivity * float(self.revenue_weight @ np.log(ratio)))
            q = q * tilt / (q * tilt + 1.0 - q)
        return self.level * self.units_per_line * multiplier * (q @ self.lines) / self.weeks

    def own_price_curve(self, product_row: int, ratios: np.ndarray) -> np.ndarray:
        """[R] expected weekly units of one product when only its price moves to ``ratios`` x reference."""
        ratios = np.asarray(ratios, dtype=np.float64)
        multiplier = demand_multiplier(ratios, False, self.elasticity[product_row], self.lift[product_row])
        q = np.broadcast_to(self.visit_probability, (len(ratios), len(self.visit_probability)))
        if self.revenue_weight is not None and self.choice_sensitivity > 0:
            tilt = np.exp(-self.choice_sensitivity * self.revenue_weight[product_row] * np.log(ratios))[:, None]
            q = q * tilt / (q * tilt + 1.0 - q)
        level = np.broadcast_to(self.level, self.units_per_line.shape)[product_row]
        return level * self.units_per_line[product_row] * multiplier * (q @ self.lines[:, product_row]) / self.weeks


class DemandSimulator:
    """Builds ``StoreDemand`` for stores of a work directory from its trained models and response."""

    def __init__(self, data: PreparedData, basket_model: BasketWorldModel, store_predictor: StoreVisitPredictor,
                 response: PriceResponse, split: str = "test", limit: int | None = None,
                 batch_size: int = 256, history_level: bool = True) -> None:  # fmt: skip
        self.data, self.model, self.response, self.batch_size = data, basket_model, response, batch_size
        self.history_level = history_level
        """Level each store's demand by its training weeks' sales (module docstring); False: the models'."""
        self.targets = EvaluationTargets.from_prepared(data, split, limit, min_products=1)
        if not len(self.targets):
            raise RetailSimError(f"--split: {split} has no store visits with a history in this work directory")
        self.store_predictor = store_predictor
        self.visit_probabilities = store_predictor.probabilities(self.targets)  # [n, n_stores]
        self.weeks = int(len(np.unique(self.targets.week_index)))
        self.builder = BatchBuilder(data, max_sequence_items=basket_model.config.max_sequence_items)
        self.product_codes = list(data.vocab["products"]["codes"])
        self.store_codes = list(data.vocab["stores"]["codes"])
        elasticity, lift = response.parameters(self.product_codes)
        self.elasticity = np.r_[np.zeros(PRODUCT_SPECIALS), elasticity]
        self.lift = np.r_[np.ones(PRODUCT_SPECIALS), lift]
        self._nodes = pd.read_parquet(self.data.workdir / "processed" / "product_graph_nodes.parquet",
                                      columns=["PROD_CODE", "train_baskets", "train_units", "mean_unit_price"])  # fmt: skip
        self.units_per_line = self._units_per_line()
        self.basket_items = self._mean_basket_items()

    def store_row(self, store_code: str) -> int:
        try:
            return self.store_codes.index(store_code) + 1
        except ValueError:
            raise RetailSimError(f"--store: {store_code} is not a store of this work directory") from None

    def product_row(self, product_code: str) -> int:
        try:
            return self.product_codes.index(product_code) + PRODUCT_SPECIALS
        except ValueError:
            raise RetailSimError(f"{product_code} is not a product of this work directory") from None

    def _units_per_line(self) -> np.ndarray:
        """[V] training units per basket line of each product (1 where unknown)."""
        nodes = self._nodes
        ratio = dict(zip(nodes["PROD_CODE"], nodes["train_units"] / nodes["train_baskets"].clip(lower=1)))
        return np.r_[np.ones(PRODUCT_SPECIALS), [ratio.get(code, 1.0) for code in self.product_codes]]

    def _mean_basket_items(self) -> np.ndarray:
        """[n] mean distinct products per earlier basket of each trip's customer."""
        sizes = np.diff(np.asarray(self.data.basket_offsets)).astype(np.float64)
        cumulative = np.r_[0.0, np.cumsum(sizes)]
        rows, history = self.targets.rows, self.targets.history_baskets
        return (cumulative[rows] - cumulative[rows - history]) / np.maximum(history, 1)

    @torch.no_grad()
    def store_demand(self, store_row: int) -> StoreDemand:
        """Run the basket model on the trips likely to go to ``store_row`` (``MIN_STORE_PROBABILITY``)."""
        q = self.visit_probabilities[:, store_row]
        keep = np.flatnonzero(q >= MIN_STORE_PROBABILITY)
        device = next(self.model.parameters()).device
        lines = np.zeros((len(keep), self.data.n_products), dtype=np.float64)
        for start in range(0, len(keep), self.batch_size):
            part = keep[start : start + self.batch_size]
            rows = self.targets.rows[part]
            batch = to_device(self.builder.next_basket(rows, store_rows=np.full(len(rows), store_row)), device)
            probabilities = torch.softmax(self.model(batch)["logits"].float(), -1).cpu().numpy()
            lines[start : start + len(part)] = probabilities * self.basket_items[part, None]
        demand = StoreDemand(store_row, q[keep].astype(np.float64), lines, self.units_per_line, self.elasticity,
                             self.lift, self.response.store.choice_sensitivity, self.weeks,
                             self.reference_prices(store_row))  # fmt: skip
        if self.history_level:
            demand.level = self._history_level(demand)
        revenue = demand.expected_units() * demand.reference_price
        demand.revenue_weight = revenue / revenue.sum() if revenue.sum() > 0 else np.zeros_like(revenue)
        return demand

    @property
    def _prices(self) -> Path:
        return self.data.workdir / "processed" / "prices_derived.parquet"

    def _history(self, demand: StoreDemand, season: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """([P] training units, [P] multiplier) of the store (``world_model.response.history``); without a
        ``season`` read once per store (it scans prices_derived)."""
        real = slice(PRODUCT_SPECIALS, None)
        args = (self._prices, [self.store_codes[demand.store_row - 1]], self.product_codes, self.elasticity[real],
                self.lift[real], demand.reference_price[None, real])  # fmt: skip
        if season is not None:
            units, multiplier = history_units_and_multiplier(*args, season=season)
            return units[0], multiplier[0]
        cache = self.__dict__.setdefault("_history_cache", {})
        if demand.store_row not in cache:
            units, multiplier = history_units_and_multiplier(*args)
            cache[demand.store_row] = units[0], multiplier[0]
        return cache[demand.store_row]

    def _history_level(self, demand: StoreDemand) -> np.ndarray:
        """[V] the store's history level (1 on PAD/UNK/MASK and where the history has no units); the
        history's side is read once per store, the models' side every pass."""
        units, multiplier = self._history(demand)
        level = np.ones(len(self.units_per_line))
        level[PRODUCT_SPECIALS:] = history_level(units, multiplier, demand.expected_units()[PRODUCT_SPECIALS:])
        return level

    @cached_property
    def season_index(self) -> SeasonIndex:
        """The categories' season index fitted on the work directory's training weeks (as a scenario
        bundle's; ``world_model.response.season``)."""
        return estimate_seasons(self._prices, self.response, self.data.first_monday)

    def season_factor(self, demand: StoreDemand, from_week: int, weeks: int) -> np.ndarray:
        """[V] what the store's units over data weeks ``from_week .. from_week + weeks - 1`` are multiplied
        by in a seasonal market: each product's category index averaged over those weeks (weeks past the
        data follow the calendar), times the level's correction for the season, ``history_multiplier`` of
        the response over that of response x season (the bundles' seasonal level: the training weeks at
        their own prices then still average to the store's sales); 1 on PAD/UNK/MASK."""
        if from_week < 1:
            raise RetailSimError(f"--from-week must be a data week index >= 1, got {from_week}")
        if weeks < 1:
            raise RetailSimError(f"--weeks must be >= 1, got {weeks}")
        first_monday = self.data.first_monday
        categories = [self.response.product_category.get(code, "") for code in self.product_codes]
        index = self.season_index.of(categories)  # [P, 52]
        factor = index[:, week_bins(first_monday, np.arange(from_week, from_week + weeks))].mean(1)
        if self.history_level:
            units, plain = self._history(demand)
            by_week = index[:, week_bins(first_monday, np.arange(self.data.n_weeks + 1))]  # column 0 unused
            factor = factor * np.where(units > 0, plain / self._history(demand, by_week)[1], 1.0)
        return np.r_[np.ones(PRODUCT_SPECIALS), factor]

    def reference_prices(self, store_row: int) -> np.ndarray:
        """[V] each product's regular (base) price at the store in the latest week it has one, else the
        product's training mean unit price (1 for PAD/UNK/MASK). Kept per store: it scans prices_derived."""
        cache = self.__dict__.setdefault("_reference_prices", {})
        if store_row not in cache:
            cache[store_row] = self._read_reference_prices(store_row)
        return cache[store_row]

    def _read_reference_prices(self, store_row: int) -> np.ndarray:
        store_code = self.store_codes[store_row - 1]
        prices = self._prices
        with duckdb.connect() as con:
            pairs = con.execute(
                f"""SELECT PROD_CODE, arg_max(base_price, week_index) FROM read_parquet({sql_string(prices)})
                    WHERE STORE_CODE = ? GROUP BY 1""",
                [store_code],
            ).fetchall()
        at_store = dict(pairs)
        nodes = self._nodes
        fallback = dict(zip(nodes["PROD_CODE"], nodes["mean_unit_price"]))
        return np.r_[np.ones(PRODUCT_SPECIALS), [at_store.get(c, fallback.get(c, 1.0)) for c in self.product_codes]]

