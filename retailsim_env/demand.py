"""Weekly demand of the managed products at the managed stores, batched over environment copies.

Two backends with one interface (``sample`` for a week's realized demand, ``forecast`` for its expectation):

``LearnedDemand`` (the trained world models). Each week, for copy b:

1. every shopper c of the population makes ``Poisson(visit_rate_c)`` trips, each to store s with the
   store-visit model's probability q_cs, tilted by the managed stores' price levels L (the price response's
   store-choice sensitivity gamma): q'_cm = q_cm L_m^-gamma / (1 + sum_m' q_cm' (L_m'^-gamma - 1));
2. drawn as what that amounts to (Poisson splitting): c's trips to managed store m are
   ``Poisson(visit_rate_c q'_cm)``, independent across stores, and of the trips to other stores (nobody
   manages them) only whether there was one is drawn, since it restarts c's weeks since the last trip.
   Each copy's generator gives one uniform per (shopper, managed store) and one per shopper, turned into
   counts by inverting the Poisson CDF for all copies at once, instead of a Poisson count and a
   multinomial per shopper and copy (on 2 cores, 64 copies: the fixed-propensity step went from 5.9 to
   3.9 ms by the splitting, and the inversion takes 0.32 ms where per-copy Poisson calls took 1.18);
   only the cells with a trip are inverted (``_nonzero_poisson``);
3. the basket model runs on all trips to managed stores of all copies (one forward per ``inference_batch``
   trips): T3 is built from the simulated week (date, weeks since the shopper's last simulated trip), the
   history items age by the weeks simulated so far, the history's products, T4 and T6 are the shopper's as
   of the scenario's data, so its output is a price-neutral distribution over products (a shopper with
   several trips to a store in a week is one row, weighted by the count). A model whose context enters
   after the encoder (``context_position="decoder"``, the default) has each (shopper, store) history
   encoded once, when the environment is built (``world_model.models.history_cache``), and a week runs its
   decoder only; its history ages count from the history's latest basket, so there the weeks simulated
   reach the model through T3's gap alone;
4. expected units of managed product k: visits x mean distinct products per basket x p_k x units per line
   x the explicit response (price ratio ** elasticity x lift ** (promoted x lift scale), the scale from the
   market's promotion fatigue) x the history level of (store, k) x k's season in the week (both below),
   summed per store. Realized demand is compound Poisson around it: basket lines of k arrive as a
   Poisson count, and each holds Q units with the share of training baskets holding k that held Q
   (the bundle's ``basket_quantities``), so multipacks and bulk buys make weekly units overdispersed:
   given the week's trips, variance / mean = E[Q^2] / E[Q] (1.5-6.4 for the shipped scenario's top 10
   products, 1.0-5.5 among the real sample's 15 most bought). With the trips' own variance, the shipped
   scenario's top 10 at its busiest store, reference prices, week 33 (the data's middle), 2,000 weekly
   draws each, side by side: 1.5-6.7 (seasons on or off), against the oracle's 1.2-5.4 and 1.0-1.5 with
   Poisson units (the 95th percentile over the mean: 1.6-3.1, the oracle's 1.5-2.8, Poisson units'
   1.4-2.0). Drawn as independent Poisson
   counts of the lines holding each quantity q (Poisson thinning), at rates expected x share_q / E[Q],
   so the draw stays one vectorized inversion, from uniforms the copy's generator gives in the same call
   as its trips' (one generator call a copy and week). It costs a Poisson count per quantity: with the
   fixed propensities 0.86-0.99 times the Poisson draw's copy-steps/s at 1 to 64 copies, with the weekly
   ones no measurable cost (``benchmarks/units_draw.py``, docs/environments.md). A bundle without the
   quantities draws Poisson units (one quantity, 1), bit
   for bit as before.

The history level (``world_model.response.history``, shared with ``retailsim whatif``). The models
learned from every basket of the training weeks, promotions and other prices included, and from card
holders only: at the reference price without a promotion their units are the history's average
conditions, not the plain ones, and miss the card-less baskets. The level, fixed
per store and product when the environment is built, is the bundle's ``history_units`` (the training
weeks' mean weekly units, every basket) over the models' units at the reference prices times
``history_multiplier`` (the mean of those weeks' response multipliers), so that at the training weeks'
own prices and promotions the expected units average to the history's (without the store-switching
channel, which the level does not model). In the shipped scenario's busiest store, top 10 products:
0.97-1.37; the learned market's units at reference prices in week 33 are then 0.73-1.10 times the
oracle's per product, 1.01 in all (0.66-0.93 and 0.84 with the models' own level), with the seasons
0.69-1.08 and 0.97 (``benchmarks/seasons.py``). Bundles built without those files keep the models' own
level.

Seasons (``world_model.response.season``). The basket model reads the date, but learned next to no season
from it (the earlier 40-week default's top 10 at its busiest store, weekly over fixed-propensity units
in six weeks from May to January, 256 draws each: 0.96-1.04 per category, 1.007 in December for the
category the truth raises 2.65 times then): the market multiplies the expected units by the bundle's week-of-year index
of the product's category (its training weeks' demand net of prices and promotions; weeks of the year they
do not cover interpolated), in both propensity modes and in the forecast. With seasons the level divides
the history multiplier of response x season (``history_multiplier_seasonal``), so the history's own weeks
still average to its units exactly. ``seasons=False`` (``EnvConfig.seasons``) and bundles without the index
have none.

With ``propensities="fixed"`` step 3 runs once, when the environment is built (the reference week, one
week after the shopper's last trip), and each week reuses those propensities: no forward per step (with
the shipped scenario on a 2-core CPU 35-45 times the weekly path's steps/s in the vector env, 10-15 times
in the single one, over repeated runs), but no calendar or recency effects from the model (the response
and the trip draws still apply). The default, "weekly", runs the model on every week's trips.

Neither model reads the week's prices (T4 carries the history's prices): every price and promotion effect
comes from the explicit, monotone response (the hybrid-demand design: docs/price_response.md), so an agent
cannot exploit a network's extrapolation. Shopper histories stay as in the data; their recency evolves.

``OracleDemand`` (a generated scenario's ground truth): the generator's ``expected_units`` under the agent's
prices at the managed cells and the generator's own calendar elsewhere; realized demand is drawn by the
generator's own law at the managed cells (``SyntheticMarket.simulate_units``: each visit's mission,
basket-size scale and multipacks), so it is as overdispersed as the generated data (variance / mean of
the top 10 products' weekly units 1.2-5.4 in the shipped scenario over 2,000 draws in week 33, where a
Poisson draw of units gives 1), and the visits are the realized visits to the
managed stores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from scipy import special

from world_model.data.synthetic.market import SyntheticMarket
from world_model.models.batches import BatchBuilder
from world_model.models.history_cache import CONTEXT_KEYS, HISTORY_KEYS, HistoryCache
from world_model.models.mamba import scan_rows
from world_model.models.predictors import StoreVisitPredictor, load_world_model, resolve_device
from world_model.pipeline.tensor_cache import BASKET_COLUMN
from world_model.response.checks import load_market
from world_model.response.history import history_level
from world_model.response.model import demand_multiplier
from world_model.response.season import week_bins
from world_model.training.trainer import autocast_dtype

from retailsim_env.scenario import MODELS, Scenario
from retailsim_env.temporal import TripTemporalFeatures
from retailsim_env.transfer import to_device, to_host_later

PROPENSITY_MODES = ("weekly", "fixed")
CPU_INFERENCE_BATCH = 256
"""Trips per basket-model forward on a CPU: chunks whose tensors stay near the caches. Measured on 2 cores
(the cached decoder): 256 a chunk 2.3x as fast as 4096 for the shipped model, 1.3x for the full size."""
CUDA_INFERENCE_BATCH = 4096
"""Trips per forward on a GPU (not tuned there yet)."""
INVERSION_GUESS_RATE = 4.0
"""Rates from which ``_poisson_inverse_cdf`` starts its search at a guess rather than at 0."""
CUDA_PIPELINE_GROUPS = 2
"""Copy groups a weekly step is cut into on a GPU (``LearnedDemand.sample``); not tuned there yet."""
MAX_POISSON_RATE = 1e6
"""The largest rate ``_poisson_inverse_cdf`` takes: up to it ``scipy.special.pdtr`` is accurate to ~1e-12
and every walk from the guess is a step or two; beyond it pdtr's error grows (~1e-8 at 1e7) and near
u = 1 the walk can take thousands of steps. A week's units of one product at one store stay far below."""
MIN_STORE_PROBABILITY = 0.005
"""Shoppers less likely than this to pick a managed store never shop there (their slot is not cached)."""
SEASON_TABLE_WEEKS = 52 * 200
"""Data weeks ``LearnedDemand.season_of``'s table may reach (200 years, 0.8 MB at 10 products); a week
outside it is binned from the calendar, so a far ``start_week`` costs no table its size."""
_STATIC_KEYS = ("customer", "store", "t6", "true_trip", "items", "item_basket", "item_weeks", "t4", "candidates",
                "candidate_features")  # fmt: skip


def _pad_cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along dim 0, padding every later dim to the largest (zeros = PAD)."""
    shape = [max(p.shape[d] for p in parts) for d in range(1, parts[0].dim())]
    out = parts[0].new_zeros((sum(p.shape[0] for p in parts), *shape))
    start = 0
    for p in parts:
        out[(slice(start, start + len(p)), *(slice(0, n) for n in p.shape[1:]))] = p
        start += len(p)
    return out


def _sum_by(copy: np.ndarray, store: np.ndarray, values: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """[B, M, K] sums of the rows of ``values`` [T, K] by (copy, store), added in row order as
    ``np.add.at`` would (the same floating-point result), through one ``np.bincount``: many times faster."""
    n_copies, n_stores, width = shape
    cell = ((copy * n_stores + store)[:, None] * width + np.arange(width)).ravel()
    sums = np.bincount(cell, weights=values.ravel(), minlength=n_copies * n_stores * width)
    return sums.reshape(shape).astype(np.float64, copy=False)  # no rows: bincount answers in integers


def _guess(u: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_poisson_inverse_cdf``'s start at rates ``r`` >= ``INVERSION_GUESS_RATE``: (k, P(X = k), P(X <= k))
    at the Cornish-Fisher guess k = floor(r + sqrt(r) z + (z^2 - 1) / 6), z the normal quantile of ``u``."""
    zero = u == 0.0  # the answer is 0 (P(X = 0) > 0 at any finite rate), found at once
    z = special.ndtri(np.where(zero, 0.5, u))  # 2^-53 <= u < 1 elsewhere: |z| < 8.3
    k = np.where(zero, 0.0, np.maximum(np.floor(r + np.sqrt(r) * z + (z * z - 1.0) / 6.0), 0.0))
    term = np.exp(k * np.log(r) - r - special.gammaln(k + 1.0))
    cdf = np.where(zero, np.maximum(term, np.finfo(np.float64).tiny), special.pdtr(k, r))  # > u where u = 0
    return k.astype(np.int64), term, cdf


def _walk_down(cells: np.ndarray, k: np.ndarray, u: np.ndarray, r: np.ndarray, term: np.ndarray, cdf: np.ndarray) -> None:
    """``_poisson_inverse_cdf``'s step down from its guesses at ``cells``: while u < P(X <= k - 1) (the
    CDF at k less P(X = k)), k goes down by one; ``k``, ``term`` = P(X = k) and ``cdf`` updated in place."""
    at = cells
    while len(at := at[(k[at] > 0) & (u[at] < cdf[at] - term[at])]):
        cdf[at] -= term[at]
        term[at] *= k[at] / r[at]
        k[at] -= 1


def _poisson_inverse_cdf(uniform: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Poisson(``rate``) counts from ``uniform`` draws in [0, 1), elementwise: the smallest k with
    uniform < P(X <= k). Vectorized over any number of generators' uniforms, so one call serves every
    copy (where a ``Generator.poisson`` call per copy costs ~7 us of overhead each).

    The search starts at 0 for rates below ``INVERSION_GUESS_RATE`` (weekly trips: most counts are 0 and
    leave after the first comparison) and elsewhere at a guess (``_guess``) with the CDF there from
    ``scipy.special.pdtr``; from its start it walks with p_k = p_k-1 x r / k, down while the uniform is
    below P(X <= k - 1) and up while it is at or above P(X <= k): a step or two at any rate. Where the
    float CDF stops growing below the uniform (probability < 1e-15 a draw) the count is the k where it
    stopped. Rates must be >= 0 and at most ``MAX_POISSON_RATE``; any real dtype or a scalar."""
    rate = np.asarray(rate, dtype=np.float64)
    _check_rates(rate)
    u = np.ascontiguousarray(uniform, dtype=np.float64).reshape(-1)
    r = (rate if rate.shape == np.shape(uniform) else np.broadcast_to(rate, np.shape(uniform))).reshape(-1)
    return _invert(u, r).reshape(np.shape(uniform))


def _check_rates(rate: np.ndarray) -> None:
    if rate.size and not (rate.min() >= 0.0 and rate.max() <= MAX_POISSON_RATE):  # False for NaN too
        raise ValueError(f"Poisson rates must be finite, >= 0 and at most {MAX_POISSON_RATE:g}, "
                         f"got {rate.min()} .. {rate.max()}")  # fmt: skip


def _invert(u: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``_poisson_inverse_cdf`` of 1-D ``u`` and ``r`` (the rates checked)."""
    large = r >= INVERSION_GUESS_RATE
    if large.all():  # the week's units: every cell from its guess (whole arrays, fewer calls)
        k, term, cdf = _guess(u, r)
        _walk_down(np.arange(len(u)), k, u, r, term, cdf)
    else:
        k = np.zeros(u.shape, dtype=np.int64)
        term = np.exp(-r)  # P(X = k) at the start
        cdf = term.copy()
        guessed = np.flatnonzero(large)
        if len(guessed):
            k[guessed], term[guessed], cdf[guessed] = _guess(u[guessed], r[guessed])
            _walk_down(guessed, k, u, r, term, cdf)
    # u >= P(X <= k): step up until it is below, or the float CDF stops growing (the walk's arrays are
    # the still-active cells' own, compacted as they finish: a scattered update per step costs more)
    at = np.flatnonzero(u >= cdf)
    ka, ua, ra, ta, ca = k[at], u[at], r[at], term[at], cdf[at]
    while len(at):
        ka += 1
        ta = ta * ra / ka
        grown = ca + ta
        more = (ua >= grown) & (grown > ca)
        k[at[~more]] = ka[~more]
        at, ka, ua, ra, ta, ca = at[more], ka[more], ua[more], ra[more], ta[more], grown[more]
    return k


def _copy_groups(n_copies: int, groups: int) -> list[slice]:
    """``range(n_copies)`` cut into at most ``groups`` contiguous, near-equal, non-empty slices."""
    groups = min(max(groups, 1), max(n_copies, 1))
    bounds = [(i * n_copies) // groups for i in range(groups + 1)]  # integers: no numpy call a step
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a] or [slice(0, 0)]


@dataclass
class _Trips:
    """One group's trips to the managed stores (``copy`` within the group, cache ``slots``, trip ``count``,
    their ``store`` and ``shopper``), each trip's week's Monday, weeks since the shopper's previous trip
    and weeks into the episode, and the group's uniforms of the week's units [G, M * K]."""

    copy: np.ndarray
    slots: np.ndarray
    count: np.ndarray
    store: np.ndarray
    shopper: np.ndarray
    mondays: np.ndarray
    gaps: np.ndarray
    elapsed: np.ndarray
    unit_uniform: np.ndarray
    """[copies, M x K x Q] the uniforms of the week's basket lines by store, product and quantity."""

    def model_args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(slots, mondays, gaps, elapsed): ``LearnedDemand.model_inputs``'s arguments."""
        return self.slots, self.mondays, self.gaps, self.elapsed


def _nonzero_poisson(uniform: np.ndarray, rate: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nonzero counts of ``_poisson_inverse_cdf(uniform, rate)`` for 2-D arrays (``uniform`` may be a
    view), as (row, column, count) in row-major order, with only those cells inverted: a count is
    nonzero where the uniform is at or above P(X = 0), which for weekly trips is a small share of the
    cells (on 2 cores at 256 x 595 cells, the earlier default's shoppers: 0.12 ms to find them where
    ``np.nonzero`` of the dense counts took 0.65)."""
    rate = np.asarray(rate, dtype=np.float64)
    if uniform.ndim != 2 or uniform.shape != rate.shape:
        raise ValueError(f"uniform and rate must be 2-D arrays of one shape, got {uniform.shape} and {rate.shape}")
    _check_rates(rate)  # here: the cells with a trip alone would hide a NaN rate
    row, column = np.divmod(np.flatnonzero(uniform >= np.exp(-rate)), rate.shape[1])
    count = _invert(uniform[row, column], rate[row, column])
    if not count.all():  # from its guess, a rate >= INVERSION_GUESS_RATE may end at 0 within rounding of P(X = 0)
        row, column, count = row[count > 0], column[count > 0], count[count > 0]
    return row, column, count


class LearnedDemand:
    """Demand from the scenario's trained models (module docstring). Per-copy state: weeks since each
    shopper's last simulated trip (``gaps`` [B, N]) and weeks simulated (``elapsed`` [B])."""

    def __init__(self, scenario: Scenario, store_rows: list[int], product_rows: np.ndarray, device: str = "auto",
                 batch_size: int = 512, propensities: str = "weekly", inference_batch: int | None = None,
                 cache_histories: bool = True, pipeline_groups: int | None = None, seasons: bool = True) -> None:  # fmt: skip
        if propensities not in PROPENSITY_MODES:
            raise ValueError(f"propensities must be one of {PROPENSITY_MODES}, got {propensities!r}")
        self.propensities = propensities
        self.scenario, self.store_rows, self.product_rows = scenario, list(store_rows), np.asarray(product_rows)
        self.cache_histories = cache_histories
        """Encode the histories once when the model's layout allows it (False: the whole model every week,
        the reference the cached decoder is checked against)."""
        self.device = resolve_device(device)
        default_batch = CPU_INFERENCE_BATCH if self.device.type == "cpu" else CUDA_INFERENCE_BATCH
        self.inference_batch = inference_batch or default_batch
        self.pipeline_groups = pipeline_groups or (CUDA_PIPELINE_GROUPS if self.device.type == "cuda" else 1)
        """Copy groups of a weekly step (``sample``): a GPU runs one group's forward while the host draws
        the next; on a CPU the same cores do both, so 1."""
        self.autocast = autocast_dtype("auto", self.device)
        data = scenario.data
        self.basket_model = load_world_model(scenario.path / MODELS["basket"], data, str(self.device), kind="basket")
        store_model = load_world_model(scenario.path / MODELS["store_visit"], data, str(self.device), kind="store_visit")
        shoppers = scenario.shoppers
        self.anchor = shoppers["anchor_row"].to_numpy(np.int64)
        self.visit_rate = shoppers["visit_rate"].to_numpy(np.float64)
        self.basket_items = shoppers["basket_items"].to_numpy(np.float64)
        self.n_shoppers = len(self.anchor)
        table = np.asarray(data.basket_table)[self.anchor]
        self.now_week = int(scenario.meta["calendar"]["weeks"])
        self.first_monday = np.datetime64(scenario.meta["calendar"]["first_monday"])
        self.temporal = TripTemporalFeatures(table[:, BASKET_COLUMN["weekday"]], table[:, BASKET_COLUMN["hour"]],
                                             table[:, BASKET_COLUMN["history_baskets"]],  # the baskets the model reads
                                             self.now_week, data.train_end, self.first_monday, self.device)  # fmt: skip
        catalog = scenario.catalog_by_row
        self.units_per_line = catalog.loc[self.product_rows, "units_per_line"].to_numpy(np.float64)
        self.elasticity = catalog.loc[self.product_rows, "elasticity"].to_numpy(np.float64)
        self.lift = catalog.loc[self.product_rows, "lift"].to_numpy(np.float64)
        self.choice_sensitivity = scenario.response.store.choice_sensitivity
        self.reference = scenario.reference_prices[np.ix_(self.store_rows, self.product_rows)].astype(np.float64)
        revenue = scenario.catalog["revenue"].to_numpy(np.float64)
        self.revenue_weight = catalog.loc[self.product_rows, "revenue"].to_numpy(np.float64) / max(revenue.sum(), 1e-9)

        predictor = StoreVisitPredictor(store_model, data, batch_size=batch_size)
        q = predictor.probabilities(SimpleNamespace(rows=self.anchor))[:, self.store_rows].astype(np.float64)
        q[q < MIN_STORE_PROBABILITY] = 0.0
        self.q = q  # [N, M]
        self._product_index = torch.as_tensor(self.product_rows.copy(), device=self.device)
        self._build_slots(data, batch_size)
        index = scenario.season_index if seasons else None
        self.season = None if index is None else index.of(list(catalog.loc[self.product_rows, "PROD_CODE_20"])).T
        """[52, K] each managed product's category index by week of the year (None: no seasons)."""
        self._season_by_week = np.ones((0, len(self.product_rows)))
        """[W, K] ``season`` by data week 0..W-1 (``season_of``), grown by doubling: a week's bin costs
        some 30 us of calendar arithmetic, several times a step."""
        self.level = self._history_level(scenario)
        self.quantity_values, self.quantity_rates = self._quantity_law(scenario)
        self.gaps = np.ones((0, self.n_shoppers))
        self.elapsed = np.zeros(0)
        self._last_trip_groups: list[tuple[np.ndarray, ...]] = []  # per copy group: its model_args

    def _history_level(self, scenario: Scenario) -> np.ndarray:
        """[M, K] the factor that makes the market's expected units at the training weeks' own prices and
        promotions their observed mean (module docstring, step 4); 1 where the history has no units or
        the bundle no history files."""
        levels = scenario.history_levels
        if levels is None:
            return np.ones((len(self.store_rows), len(self.product_rows)))
        if self.season is not None:  # the index's bundle has the history multiplier of response x season
            levels = levels[0], scenario.history_seasonal_multiplier
        units, multiplier = (np.asarray(a, np.float64)[np.ix_(self.store_rows, self.product_rows)] for a in levels)
        model = np.einsum("nm,mnk->mk", self.q * self.visit_rate[:, None], self.propensity)  # at reference prices
        return history_level(units, multiplier, model)

    def _quantity_law(self, scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
        """([K, Q] the units a basket line of managed product k can hold, [K, Q] the lines of each per unit
        of expected demand: share / mean units a line, so that units = sum_q value_q x Poisson(expected x
        rate_q) has mean ``expected``; module docstring, step 4). Q is the most quantities any managed
        product has, the rest padded with rate 0. A bundle without ``basket_quantities`` or a product
        without training baskets gets one quantity, 1 at rate 1: Poisson units."""
        table = scenario.basket_quantities
        laws = [(np.ones(1), np.ones(1))] * len(self.product_rows)
        if table is not None:
            by_row = dict(tuple(table[table["row"].isin(self.product_rows)].groupby("row")))
            for k, row in enumerate(self.product_rows):
                if row in by_row:
                    values = by_row[row]["QUANTITY"].to_numpy(np.float64)
                    share = by_row[row]["baskets"].to_numpy(np.float64) / by_row[row]["baskets"].sum()
                    laws[k] = (values, share / (values @ share))
        width = max(len(values) for values, _ in laws)
        values, rates = np.ones((len(laws), width)), np.zeros((len(laws), width))
        for k, (v, r) in enumerate(laws):
            values[k, : len(v)], rates[k, : len(r)] = v, r
        return values, rates

    @property
    def last_trips(self) -> tuple[np.ndarray, ...] | None:
        """(slots, Mondays, gaps, elapsed) of the last ``sample``'s forward: what ``model_inputs`` rebuilds
        (the groups' joined here, when asked: the benchmarks ask, the step does not)."""
        parts = self._last_trip_groups
        if len(parts) <= 1:
            return parts[0] if parts else None
        return tuple(np.concatenate([part[i] for part in parts]) for i in range(4))

    # ------------------------------------------------------------------ cached model inputs
    @torch.no_grad()
    def _build_slots(self, data, batch_size: int) -> None:
        """Model inputs of every (shopper, managed store) pair with q > 0, and their expected lines of the
        managed products at a reference week (for forecasts): ``self.propensity`` [M, N, K]."""
        builder = BatchBuilder(data, max_sequence_items=self.basket_model.config.max_sequence_items)
        self.slot_store, self.slot_shopper = np.nonzero(self.q.T)  # slots ordered by store, then shopper
        n_slots = len(self.slot_store)
        parts: dict[str, list[torch.Tensor]] = {key: [] for key in _STATIC_KEYS}
        for start in range(0, n_slots, batch_size):
            c, m = self.slot_shopper[start : start + batch_size], self.slot_store[start : start + batch_size]
            batch = builder.next_basket(self.anchor[c], store_rows=np.asarray(self.store_rows)[m])
            for key in _STATIC_KEYS:
                parts[key].append(batch[key])
        self.cache = {key: _pad_cat(value).to(self.device) for key, value in parts.items()} if n_slots else {}
        self.history_cache = None
        if self.cache_histories and self.basket_model.config.context_position == "decoder" and n_slots:
            self.history_cache = HistoryCache(self.basket_model, self.cache, batch_size, self.autocast)
            for key in HISTORY_KEYS:  # encoded now; the weekly inputs are the trips' context alone
                del self.cache[key]
        self.propensity = np.zeros((len(self.store_rows), self.n_shoppers, len(self.product_rows)))
        reference = self.first_monday + 7 * (self.now_week - 1)
        for start in range(0, n_slots, batch_size):
            slots = np.arange(start, min(start + batch_size, n_slots))
            p = self._queue_probabilities(slots, np.full(len(slots), reference), np.ones(len(slots)), np.zeros(len(slots)))()
            c, m = self.slot_shopper[slots], self.slot_store[slots]
            self.propensity[m, c] = p * self.basket_items[c, None] * self.units_per_line[None, :]

    def _queue_probabilities(self, slots: np.ndarray, mondays: np.ndarray, gaps: np.ndarray,
                             elapsed: np.ndarray) -> Callable[[], np.ndarray]:  # fmt: skip
        """A call returning [n, K], the basket model's probabilities of the managed products for the trips
        in ``slots``: on a GPU the forward and the copy back are queued now, and the host is free until
        the call."""
        return to_host_later(self.managed_probabilities(self.forward(self.model_inputs(slots, mondays, gaps, elapsed))))

    def managed_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """[n, K] float64 on the model's device: the softmax of next-basket ``logits`` [n, V] over the whole
        vocabulary, at the managed products."""
        return torch.softmax(logits.float(), -1)[:, self._product_index].double()

    def model_inputs(self, slots: np.ndarray, mondays: np.ndarray, gaps: np.ndarray,
                     elapsed: np.ndarray) -> list[dict[str, torch.Tensor]]:  # fmt: skip
        """The basket model's inputs for trips ``slots`` in the weeks of ``mondays``, ``gaps`` weeks after
        each shopper's previous trip and ``elapsed`` weeks into the episode, ``inference_batch`` trips a
        chunk (whole model batches: fewer where the pure-PyTorch scan would outgrow ``scan_rows``'s bound),
        or with a history cache the trips' context and cache ``rows``.

        The trips' rows (and ages) go to the device in one copy a call that waits for no queued work
        (``retailsim_env.transfer``): the previous group's forward may still be running."""
        chunks, step, keys = [], self.inference_batch, CONTEXT_KEYS
        if self.history_cache is None:  # the whole model: its encoder runs over 1 + L tokens a trip
            step = scan_rows(self.basket_model.encoder.config, 1 + self.cache["items"].shape[1], step, self.device)
            keys = _STATIC_KEYS
        t3 = self.temporal(self.slot_shopper[slots], mondays, gaps)
        rows = to_device(np.asarray(slots, dtype=np.int64), self.device)
        if self.history_cache is None:
            ages = to_device(np.asarray(elapsed, dtype=np.float32), self.device)
        for start in range(0, len(slots), step):
            part = slice(start, start + step)
            index = rows[part]
            batch = {key: self.cache[key].index_select(0, index) for key in keys if key != "t3"}
            batch["t3"] = t3[part]
            if self.history_cache is not None:
                batch["rows"] = index  # history ages are relative to its latest basket: elapsed drops out
            else:
                batch["item_weeks"] = batch["item_weeks"] + ages[part, None] * (batch["item_basket"] > 0)
            chunks.append(batch)
        return chunks

    @torch.no_grad()
    def forward(self, inputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Next-basket logits [n, V] of ``model_inputs``: the cached decoder, or the whole model; under
        ``autocast`` (bfloat16 on CUDA, as the trainer's amp="auto"; None: full precision)."""
        with torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            if self.history_cache is not None:
                return torch.cat([self.history_cache.logits(batch["rows"], batch).float() for batch in inputs])
            return torch.cat([self.basket_model(batch)["logits"].float() for batch in inputs])

    # ------------------------------------------------------------------ per-copy state
    def reset(self, copies: np.ndarray, n_copies: int, rngs: list[np.random.Generator]) -> None:
        if self.gaps.shape[0] != n_copies:
            self.gaps, self.elapsed = np.ones((n_copies, self.n_shoppers)), np.zeros(n_copies)
        self.gaps[copies], self.elapsed[copies] = 1.0, 0.0

    def _response_inputs(self, price: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(price ratio to the reference after discount [B, M, K], promoted [B, M, K], log level [B, M]).
        The level weights each managed product by its share of all training revenue (the rest at 1)."""
        ratio = price * (1.0 - depth) / self.reference
        return ratio, depth > 0, np.log(ratio) @ self.revenue_weight

    def _choice(self, log_level: np.ndarray) -> np.ndarray:
        """[B, N, M] tilted probabilities q' for the copies' managed-store log price levels [B, M]. The
        denominator is summed store by store, elementwise: a matrix product's rounding depends on how many
        copies share the call (BLAS picks other kernels), and copy i must replay a single environment."""
        w = np.exp(-self.choice_sensitivity * log_level)  # [B, M]
        moved = sum((w[:, m, None] - 1.0) * self.q[None, :, m] for m in range(w.shape[1]))  # [B, N]
        return self.q * w[:, None, :] / (1.0 + moved)[:, :, None]

    def _multiplier(self, weeks: np.ndarray, ratio: np.ndarray, promoted: np.ndarray,
                    lift_scale: np.ndarray | float) -> np.ndarray:  # fmt: skip
        """[B, M, K] the explicit response (promoted lifts raised to ``lift_scale``) times the history level
        and the season of weeks ``weeks`` [B]."""
        lift = self.lift ** np.broadcast_to(lift_scale, ratio.shape)
        return demand_multiplier(ratio, promoted, self.elasticity, lift) * self.level * self.season_of(weeks)[:, None, :]

    def season_of(self, weeks: np.ndarray) -> np.ndarray:
        """[B, K] the managed products' season index in data weeks ``weeks`` [B] (1 without seasons)."""
        if self.season is None:
            return np.ones((len(weeks), len(self.product_rows)))
        weeks = np.asarray(weeks, np.int64)
        if weeks.size == 0 or weeks.min() < 0 or weeks.max() >= SEASON_TABLE_WEEKS:  # outside the table's reach
            return self.season[week_bins(self.first_monday, weeks)]
        if weeks.max() >= len(self._season_by_week):
            size = max(2 * len(self._season_by_week), int(weeks.max()) + 1, 128)
            self._season_by_week = self.season[week_bins(self.first_monday, np.arange(size))]
        return self._season_by_week[weeks]

    def forecast(self, weeks: np.ndarray, price: np.ndarray, depth: np.ndarray,
                 lift_scale: np.ndarray | float = 1.0) -> np.ndarray:  # fmt: skip
        """[B, M, K] expected units (the model's forecast) in weeks ``weeks`` [B] at shelf prices ``price``,
        promotion depths ``depth`` and lift exponents ``lift_scale`` [B, M, K] (the propensities of a
        reference week; the season index of each copy's week)."""
        ratio, promoted, log_level = self._response_inputs(price, depth)
        trips = self._choice(log_level) * self.visit_rate[None, :, None]  # [B, N, M]
        base = np.einsum("bnm,mnk->bmk", trips, self.propensity)  # not BLAS: a copy's sums must not depend on B
        return base * self._multiplier(np.asarray(weeks), ratio, promoted, lift_scale)

    def reference_units(self, week: int, price: np.ndarray) -> np.ndarray:
        """[M, K] expected units at shelf prices ``price`` [M, K] without promotions in data week ``week``,
        without the season index (it averages 1 over the training weeks): the units the market scales
        observations and rewards by, the same with seasons on or off but for the level."""
        weeks = np.array([week])
        return self.forecast(weeks, price[None], np.zeros((1, *price.shape)))[0] / self.season_of(weeks)

    @torch.no_grad()
    def sample(self, weeks: np.ndarray, price: np.ndarray, depth: np.ndarray, rngs: list[np.random.Generator],
               lift_scale: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """(demand [B, M, K] realized units, visits [B, M]) of weeks ``weeks`` [B] (data week indices) at
        shelf prices ``price``, promotion depths ``depth`` and lift exponents ``lift_scale`` [B, M, K].

        The copies are cut into ``pipeline_groups`` groups: every group's trips are drawn and its forward
        queued before the first group's probabilities are awaited, so on a GPU the host draws a group
        while the device runs the one before. Each copy's trips and recency are the same however many
        groups, and on a CPU its units too (on CUDA the forward's rounding may depend on the batch)."""
        ratio, promoted, log_level = self._response_inputs(price, depth)
        if not np.isfinite(log_level).all():  # checked before any group's state moves on
            raise ValueError("prices and promotion depths must give finite, positive prices after discount")
        multiplier = self._multiplier(np.asarray(weeks), ratio, promoted, lift_scale)
        n_copies = ratio.shape[0]
        if len(rngs) != n_copies:
            raise ValueError(f"rngs: one generator a copy, got {len(rngs)} for {n_copies} copies")
        weekly, weeks = self.propensities == "weekly", np.asarray(weeks)
        groups = _copy_groups(n_copies, self.pipeline_groups if weekly else 1)
        drawn = []
        for group in groups:
            trips = self._draw_trips(group, weeks[group], log_level[group], rngs[group])
            pending = self._queue_probabilities(*trips.model_args()) if weekly and len(trips.slots) else None
            drawn.append((trips, pending))
        demand, visits = np.zeros(ratio.shape), np.zeros(ratio.shape[:2])
        for group, (trips, pending) in zip(groups, drawn):
            if not weekly:
                lines = trips.count[:, None] * self.propensity[trips.store, trips.shopper]
            elif pending is not None:
                lines = pending() * (trips.count * self.basket_items[trips.shopper])[:, None] * self.units_per_line[None, :]
            else:
                lines = np.zeros((0, ratio.shape[2]))
            shape = (group.stop - group.start, *ratio.shape[1:])
            expected = _sum_by(trips.copy, trips.store, lines, shape) * multiplier[group]
            demand[group] = self._units(trips.unit_uniform, expected)
            visits[group] = _sum_by(trips.copy, trips.store, trips.count[:, None].astype(np.float64), (*shape[:2], 1))[..., 0]
        if weekly and any(len(trips.slots) for trips, _ in drawn):
            self._last_trip_groups = [trips.model_args() for trips, _ in drawn]
        return demand, visits

    def _units(self, uniform: np.ndarray, expected: np.ndarray) -> np.ndarray:
        """[G, M, K] realized units around ``expected`` [G, M, K] from ``uniform`` [G, M x K x Q]: the
        Poisson counts of basket lines holding each quantity (step 4), summed per cell in quantity order.
        Dense: inverting only the nonzero counts (``_nonzero_poisson``) was slower here (on 2 cores, the
        earlier 40-week default's 10 x 20 cells a week: 0.40 against 0.28 ms a single-copy fixed-propensity
        draw, 2.77 against 2.53 ms for 64 copies), as the zero test costs an exp per cell as well."""
        rates = expected[..., None] * self.quantity_rates  # [G, M, K, Q]
        return (_poisson_inverse_cdf(uniform.reshape(rates.shape), rates) * self.quantity_values).sum(-1)

    def _draw_trips(self, group: slice, weeks: np.ndarray, log_level: np.ndarray,
                    rngs: list[np.random.Generator]) -> _Trips:  # fmt: skip
        """The week's trips of copies ``group`` (steps 1-2 of the module docstring) and the uniforms of
        their units; the copies' weeks since the last trip move on (the trips keep the gaps before)."""
        tilted = self._choice(log_level)  # [G, N, M]
        slot_rate = self.visit_rate[self.slot_shopper] * tilted[:, self.slot_shopper, self.slot_store]  # [G, S]
        no_trip_elsewhere = np.exp(-self.visit_rate * np.clip(1.0 - tilted.sum(-1), 0.0, None))  # [G, N]
        # Each copy's generator draws, in one call, the uniforms of its trips to the managed stores, of
        # whether each shopper went anywhere else and of the week's units: the per-copy streams, so copy b
        # replays a single environment seeded like it. The rest is batched.
        n_slots, n_cells = len(self.slot_store), log_level.shape[1] * self.quantity_rates.size
        uniform = np.empty((len(rngs), n_slots + self.n_shoppers + n_cells))
        for b, rng in enumerate(rngs):
            rng.random(out=uniform[b])
        copy, slots, count = _nonzero_poisson(uniform[:, :n_slots], slot_rate)  # trips in copy, store, shopper order
        shopper = self.slot_shopper[slots]
        gaps_now = self.gaps[group]  # a view: 1 where shopped, else one more (arithmetic: 3x a masked store)
        trips = _Trips(copy, slots, count, self.slot_store[slots], shopper,
                       mondays=(self.first_monday + 7 * (weeks.astype(np.int64) - 1))[copy],
                       gaps=gaps_now[copy, shopper], elapsed=self.elapsed[group][copy],
                       unit_uniform=uniform[:, n_slots + self.n_shoppers :])  # fmt: skip
        shopped = uniform[:, n_slots : n_slots + self.n_shoppers] >= no_trip_elsewhere  # [G, N]: a trip elsewhere ...
        shopped[copy, shopper] = True  # ... or to a managed store
        gaps_now += 1.0
        gaps_now *= ~shopped
        gaps_now += shopped
        self.elapsed[group] += 1.0
        return trips


class OracleDemand:
    """Demand from the generator's true model (module docstring)."""

    def __init__(self, scenario: Scenario, store_rows: list[int], product_rows: np.ndarray) -> None:
        if not scenario.has_ground_truth:
            raise ValueError(f"demand='oracle' needs a generated scenario with ground truth; {scenario.name} has none")
        self.market: SyntheticMarket = load_market(scenario.path / "ground_truth")
        store_codes = scenario.stores_by_row.loc[list(store_rows), "STORE_CODE"]
        product_codes = scenario.catalog_by_row.loc[np.asarray(product_rows), "PROD_CODE"]
        self.store_index = pd.Index(self.market.stores.code).get_indexer(store_codes)
        self.product_index = pd.Index(self.market.catalog.prod_code).get_indexer(product_codes)
        if (self.store_index < 0).any() or (self.product_index < 0).any():
            raise ValueError(f"scenario {scenario.name}: stores or products missing from its ground truth")

    def reset(self, copies: np.ndarray, n_copies: int, rngs: list[np.random.Generator]) -> None:
        """The oracle has no per-copy state."""

    def _week(self, week: int, price: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """The generator's full price and depth matrices [S, P] of data week ``week`` with the managed
        cells at shelf ``price`` and promotion ``depth`` [M, K]; also the generator's week index and cells."""
        market_week = max(int(week) - 1, 0)  # data week 1 is the generator's week 0
        shelf, scheduled_depth = self.market.scheduled_prices(market_week)
        cells = np.ix_(self.store_index, self.product_index)
        shelf[cells] = price * (1.0 - depth)
        scheduled_depth[cells] = depth
        return shelf, scheduled_depth, market_week, cells

    def reference_units(self, week: int, price: np.ndarray) -> np.ndarray:
        """[M, K] the generator's expected units at shelf prices ``price`` [M, K] without promotions in data
        week ``week``, its season included (the truth has no season-free level)."""
        return self.forecast(np.array([week]), price[None], np.zeros((1, *price.shape)))[0]

    def forecast(self, weeks: np.ndarray, price: np.ndarray, depth: np.ndarray,
                 lift_scale: np.ndarray | float = 1.0) -> np.ndarray:  # fmt: skip
        """[B, M, K] the generator's expected units (``expected_units``), each promoted cell's lift raised
        to the power ``lift_scale``: units = units without the lift at the same paid price x lift ** scale."""
        scale = np.broadcast_to(lift_scale, price.shape)
        lift = self.market.catalog.promo_lift[self.product_index]
        units = []
        for b, week in enumerate(weeks):
            shelf, full_depth, market_week, cells = self._week(week, price[b], depth[b])
            expected = self.market.expected_units(market_week, shelf, full_depth)[cells]
            units.append(expected * np.where(depth[b] > 0, lift ** (scale[b] - 1.0), 1.0))
        return np.stack(units)

    def sample(self, weeks: np.ndarray, price: np.ndarray, depth: np.ndarray, rngs: list[np.random.Generator],
               lift_scale: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """(realized demand [B, M, K], visits to the managed stores [B, M]), drawn by the generator's own
        law at the managed cells (``SyntheticMarket.simulate_units``: visits, missions, basket-size
        scales, multipacks), so as overdispersed as the generated data; the lift as in ``forecast``."""
        scale = np.broadcast_to(lift_scale, price.shape)
        draws = []
        for b, week in enumerate(weeks):
            shelf, full_depth, market_week, _ = self._week(week, price[b], depth[b])
            draws.append(self.market.simulate_units(market_week, shelf, full_depth, self.store_index, self.product_index,
                                                    rngs[b], lift_exponent=scale[b]))  # fmt: skip
        return np.stack([units for units, _ in draws]), np.stack([visits for _, visits in draws])
