"""The structural market: one week's prices and promotions in, that week's shopping out.

``SyntheticMarket`` holds the catalog, the stores and the population drawn from the seed, and the
weekly step shared by data generation and the oracle environment:

1. **Demand multiplier** of product p at store s::

       m[s, p] = (price[s, p] / base_p) ** eps_dep(p) * lift_dep(p) ** [depth[s, p] > 0] * season_dep(p)(week)

   ``price`` is the shelf price actually charged (already discounted); ``promo_depth`` only switches the
   promotion lift on (display/feature effect on top of the discount's price effect).
2. **Visits**: customer c visits ``Poisson(visit_rate_c * traffic(week))`` times (independent of prices).
3. **Store choice** per visit among the customer's stores, with probability proportional to
   ``pull[c, k] * level[s_k] ** (-eta * sensitivity_c)``, where ``level[s] = exp(sum_p g_p log(price[s,p]
   / base_p))`` is the store's popularity-weighted price level (``eta = store_price_sensitivity``).
4. **Mission** per visit (Top Up / Small Shop / Full Shop, customer-specific probabilities) and a size
   scale ``lambda = mission_items[mission] * Gamma(k, 1/k)`` (mean mission_items, independent of prices).
5. **Items** (Poissonized, so that the price response is not diluted): the number of draws of product p
   in the visit is Poisson with mean ``lambda * (rho_c * r[c, p] + (1 - rho_c) * g_p) * m[s, p]`` where
   ``r[c, .]`` are the customer's repertoire weights (sum 1) and ``g`` the catalog popularity (sum 1).
   It is sampled as two Poisson totals (repertoire, exploration) followed by categorical draws, which is
   the same distribution. Draws of the same product in one visit merge into one line.
6. **Quantity** per draw: 1, or with the product's multipack probability a multi-unit quantity (mostly
   3), independent of price; quantities of merged draws add up. SPEND = quantity x shelf price.

Hence the **expected units** of product p at store s are, exactly (``expected_units``)::

    E[U(s, p)] = qbar_p * m[s, p] * sum_c v_c * traffic * P_c(s) * Lbar_c * (rho_c r[c, p] + (1 - rho_c) g_p)

with ``Lbar_c = sum_m pi_c(m) * mission_items[m]``. At fixed store traffic the own-price elasticity of
expected units is exactly the department's ``eps`` (and the promotion multiplies them exactly by the
lift); the only other channel is store choice: raising ``price[s, p]`` raises ``level[s]`` by the share
``g_p`` and moves ``-eta * sensitivity_c * g_p * (1 - P_c(s))`` of store-s visits elsewhere, which is
small for a typical product (g_p ~ 1/P), not for a top seller (docs/synthetic_market.md: -1.67 against
-1.45 for the earlier 40-week default's top product) and matters for store-wide price moves.
A visit whose item draws are all zero leaves no basket (a shopper who bought nothing we sell).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from ..schema import layout_columns
from . import baskets as bk
from .calendar import holds_month_day, shop_week, week_dates, week_day_codes
from .catalog import MULTI_QUANTITIES, MULTI_QUANTITY_PROBS, Catalog, build_catalog
from .config import MarketConfig
from .population import HOUR_SHARES, HOURS, SEG1_NAMES, SEG2_NAMES, Population, build_population
from .pricing import promotion_depths, regular_price_path, shelf_prices
from .sampling import draw_categorical, draw_rows, row_cumsum
from .stores import FORMAT_NAMES, REGION_NAMES, Stores, build_stores

# Independent random streams of the market structure (changing one part keeps the others).
STREAM_CATALOG, STREAM_STORES, STREAM_POPULATION = 1, 2, 3
BASKET_ID_BASE = 994_100_100_000_000
BASKETS_PER_WEEK_MAX = 10_000_000
_AGG_CHUNK = 4096


@dataclass(frozen=True)
class CalendarWeek:
    """One LGSR week: fiscal code and its Monday..Sunday dates."""

    shop_week: int
    date_from: date
    date_to: date


@dataclass(frozen=True)
class WeekLines:
    """One simulated week as index arrays (the fast form; ``SyntheticMarket.to_table`` writes LGSR).

    Baskets are the visits that bought something, in basket-id order; lines are sorted by basket then
    product.
    """

    week_index: int
    n_visits: int
    basket_customer: np.ndarray  # [B] customer index (>= n_named: anonymous)
    basket_store: np.ndarray  # [B] store index
    basket_mission: np.ndarray  # [B] index into MISSION_NAMES
    basket_day: np.ndarray  # [B] 0 = Monday .. 6 = Sunday
    basket_hour: np.ndarray  # [B] int8
    basket_id: np.ndarray  # [B] int64, 15 digits
    basket_size: np.ndarray  # [B] index into baskets.SIZE_NAMES
    basket_type: np.ndarray  # [B] index into baskets.TYPE_NAMES
    basket_dominant: np.ndarray  # [B] index into baskets.DOMINANT_NAMES
    basket_price_sensitivity: np.ndarray  # [B] index into baskets.PRICE_SENSITIVITY_NAMES
    line_basket: np.ndarray  # [L] basket row
    line_product: np.ndarray  # [L] product index
    line_quantity: np.ndarray  # [L] int32
    line_spend_cents: np.ndarray  # [L] int64

    @property
    def n_lines(self) -> int:
        return len(self.line_product)

    @property
    def n_baskets(self) -> int:
        return len(self.basket_id)

    def units(self, n_stores: int, n_products: int) -> np.ndarray:
        """[S, P] units sold (sum of quantities) per store and product."""
        key = self.basket_store[self.line_basket] * n_products + self.line_product
        return np.bincount(key, weights=self.line_quantity, minlength=n_stores * n_products).reshape(
            n_stores, n_products
        )


class SyntheticMarket:
    """A synthetic grocery market with known truth, built deterministically from ``config.seed``.

    Attributes: ``config``, ``catalog`` (products and departments with their true elasticities, lifts,
    costs, base prices), ``stores`` (format, region, price index), ``population`` (customers, card-less
    shoppers included). See the module docstring for the model.
    """

    def __init__(self, config: MarketConfig) -> None:
        self.config = config
        seed = config.seed
        self.catalog: Catalog = build_catalog(config, np.random.default_rng([seed, STREAM_CATALOG]))
        self.stores: Stores = build_stores(config, np.random.default_rng([seed, STREAM_STORES]))
        self.population: Population = build_population(
            config, self.catalog, self.stores, np.random.default_rng([seed, STREAM_POPULATION])
        )
        self.regular_path = regular_price_path(config, self.catalog.n_products, config.weeks)
        self._init_derived()

    # ----------------------------------------------------------------------------- derived constants
    def _init_derived(self) -> None:
        cat, pop = self.catalog, self.population
        self._elasticity = cat.elasticity
        self._lift = cat.promo_lift
        self._log_base = np.log(cat.base_price)
        self._mean_quantity = cat.mean_quantity
        self._product_dept = cat.product_dept
        self._product_kind = cat.product_kind
        self._mission_items = np.asarray(self.config.mission_items, dtype=float)
        self._mission_shape = np.asarray(self.config.mission_dispersion, dtype=float)
        self._expected_scale = pop.mission_probs @ self._mission_items  # Lbar_c
        self._eta = self.config.store_price_sensitivity * pop.price_sensitivity
        self._mission_cum = row_cumsum(pop.mission_probs)
        self._weekday_cum = row_cumsum(pop.weekday_probs)
        self._multi_cum = np.cumsum(MULTI_QUANTITY_PROBS) / MULTI_QUANTITY_PROBS.sum()
        self._dicts: dict[str, pa.Array] | None = None
        self._item_masses: dict[tuple[int, ...], np.ndarray] = {}  # simulate_units' per product set

    @property
    def n_stores(self) -> int:
        return self.stores.n_stores

    @property
    def n_products(self) -> int:
        return self.catalog.n_products

    # ----------------------------------------------------------------------------- calendar
    def calendar(self, weeks: int | None = None) -> list[CalendarWeek]:
        """The first ``weeks`` (default ``config.weeks``) LGSR weeks of the market."""
        n = self.config.weeks if weeks is None else weeks
        return [self.calendar_week(i) for i in range(n)]

    def calendar_week(self, week_index: int) -> CalendarWeek:
        monday, sunday = week_dates(self.config.start_date, week_index)
        return CalendarWeek(shop_week(self.config.start_week, week_index), monday, sunday)

    def traffic(self, week_index: int) -> float:
        """Visit multiplier of the week (Christmas and New Year weeks are quieter)."""
        monday, _ = week_dates(self.config.start_date, week_index)
        if holds_month_day(monday, 12, 25):
            return self.config.christmas_traffic
        if holds_month_day(monday, 1, 1):
            return self.config.new_year_traffic
        return 1.0

    def season(self, week_index: int) -> np.ndarray:
        """[P] seasonal demand multiplier of each product in the week."""
        monday, _ = week_dates(self.config.start_date, week_index)
        return self.catalog.dept_season(monday)[self._product_dept]

    # ----------------------------------------------------------------------------- prices
    def regular_multiplier(self, week_index: int) -> np.ndarray:
        """[P] permanent price-change multiplier of the base price in the week."""
        if week_index >= len(self.regular_path):  # an oracle environment running past config.weeks
            self.regular_path = regular_price_path(self.config, self.n_products, 2 * week_index + 1)
        return self.regular_path[week_index]

    def promotions(self, week_index: int) -> np.ndarray:
        """[regions, P] scheduled promotion depth per region and product."""
        return promotion_depths(self.config, week_index, len(REGION_NAMES), self.n_products)

    def scheduled_prices(self, week_index: int) -> tuple[np.ndarray, np.ndarray]:
        """The generator's own calendar: (shelf price [S, P], promotion depth [S, P] in [0, 1))."""
        depth = self.promotions(week_index)[self.stores.region]
        price = shelf_prices(self.catalog.base_price, self.stores.price_index, self.regular_multiplier(week_index), depth)
        return price, depth

    # ----------------------------------------------------------------------------- demand pieces
    def _log_price_ratio(self, price: np.ndarray) -> np.ndarray:
        """[S, P] log(price / base price)."""
        log_ratio = np.log(np.asarray(price, dtype=np.float64))
        log_ratio -= self._log_base
        return log_ratio

    def demand_multiplier(
        self, week_index: int, price: np.ndarray, promo_depth: np.ndarray, log_ratio: np.ndarray | None = None
    ) -> np.ndarray:
        """[S, P] m = (price / base)^eps * lift^[promo] * season."""
        m = self._log_price_ratio(price) if log_ratio is None else log_ratio.copy()
        m *= self._elasticity
        np.exp(m, out=m)
        m *= np.where(np.asarray(promo_depth) > 0, self._lift * self.season(week_index), self.season(week_index))
        return m

    def store_price_level(self, price: np.ndarray, log_ratio: np.ndarray | None = None) -> np.ndarray:
        """[S] popularity-weighted geometric mean of price / base price per store."""
        log_ratio = self._log_price_ratio(price) if log_ratio is None else log_ratio
        return np.exp(log_ratio @ self.catalog.popularity)

    def store_choice_probs(self, price: np.ndarray, log_ratio: np.ndarray | None = None) -> np.ndarray:
        """[N, K] probability that a visit of customer c goes to its store slot k."""
        pop = self.population
        log_level = np.log(self.store_price_level(price, log_ratio))
        with np.errstate(divide="ignore"):
            logit = np.log(pop.store_pull) - self._eta[:, None] * log_level[pop.store_slots]
        logit -= logit.max(axis=1, keepdims=True)
        w = np.exp(logit)
        return w / w.sum(axis=1, keepdims=True)

    # ----------------------------------------------------------------------------- truth
    def expected_units(self, week_index: int, price: np.ndarray, promo_depth: np.ndarray) -> np.ndarray:
        """[S, P] expected units under the true model (exact; no sampling). See the module docstring."""
        pop = self.population
        n_s, n_p = self.n_stores, self.n_products
        log_ratio = self._log_price_ratio(price)
        m = self.demand_multiplier(week_index, price, promo_depth, log_ratio)
        visit_weight = (
            pop.visit_rate * self.traffic(week_index) * self._expected_scale
        )[:, None] * self.store_choice_probs(price, log_ratio)  # [N, K] expected visits x basket scale
        rep_mass = np.zeros(n_s * n_p)
        explore_mass = np.bincount(
            pop.store_slots.ravel(), weights=(visit_weight * (1.0 - pop.repertoire_share)[:, None]).ravel(),
            minlength=n_s,
        )
        for start in range(0, pop.n_total, _AGG_CHUNK):
            stop = min(start + _AGG_CHUNK, pop.n_total)
            w = visit_weight[start:stop] * pop.repertoire_share[start:stop, None]  # [n, K]
            key = pop.store_slots[start:stop, :, None] * n_p + pop.repertoire[start:stop, None, :]  # [n, K, R]
            wt = w[:, :, None] * pop.repertoire_weight[start:stop, None, :]
            rep_mass += np.bincount(key.ravel(), weights=wt.ravel(), minlength=n_s * n_p)
        mass = rep_mass.reshape(n_s, n_p) + explore_mass[:, None] * self.catalog.popularity[None, :]
        return self._mean_quantity[None, :] * m * mass

    # ----------------------------------------------------------------------------- simulation
    def simulate_week_lines(
        self, week_index: int, price: np.ndarray, promo_depth: np.ndarray, rng: np.random.Generator
    ) -> WeekLines:
        """Sample one week of shopping under the given prices and promotions (fast index form)."""
        pop = self.population
        price = np.asarray(price, dtype=np.float64)
        log_ratio = self._log_price_ratio(price)
        m = self.demand_multiplier(week_index, price, promo_depth, log_ratio)

        # visits, store, mission, size scale
        n_visits = rng.poisson(pop.visit_rate * self.traffic(week_index))
        cust = np.repeat(np.arange(pop.n_total), n_visits)
        slot = draw_rows(row_cumsum(self.store_choice_probs(price, log_ratio)), cust, rng)
        store = pop.store_slots[cust, slot]
        mission = draw_rows(self._mission_cum, cust, rng)
        shape = self._mission_shape[mission]
        scale = self._mission_items[mission] * rng.gamma(shape, 1.0 / shape)

        # item draws: repertoire part and exploration part
        rep = pop.repertoire[cust]  # [V, R]
        rep_w = pop.repertoire_weight[cust] * m[store[:, None], rep]
        rho = pop.repertoire_share[cust]
        n_rep = rng.poisson(scale * rho * rep_w.sum(axis=1))
        explore_w = m * self.catalog.popularity[None, :]  # [S, P]
        n_explore = rng.poisson(scale * (1.0 - rho) * explore_w.sum(axis=1)[store])

        v_rep = np.repeat(np.arange(len(cust)), n_rep)
        p_rep = rep[v_rep, draw_rows(row_cumsum(rep_w), v_rep, rng)]
        v_exp = np.repeat(np.arange(len(cust)), n_explore)
        used_stores, store_row = np.unique(store[v_exp], return_inverse=True)
        p_exp = draw_rows(row_cumsum(explore_w[used_stores]), store_row, rng)

        visit = np.concatenate([v_rep, v_exp])
        product = np.concatenate([p_rep, p_exp])
        quantity = self._draw_quantities(product, rng)
        return self._assemble(week_index, price, cust, store, mission, visit, product, quantity, rng)

    def simulate_units(
        self,
        week_index: int,
        price: np.ndarray,
        promo_depth: np.ndarray,
        stores: np.ndarray,
        products: np.ndarray,
        rng: np.random.Generator,
        lift_exponent: np.ndarray | float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One sampled week at a few cells only: (units [len(stores), len(products)], visits [len(stores)]).

        The law of ``simulate_week_lines`` restricted to those cells, so as overdispersed as the generated
        data (a visit's Gamma size scale is shared by its products; multipacks): customer c's visits to
        store s are ``Poisson(v_c * traffic * P_c(s))`` (Poisson splitting of steps 2-3: the other stores'
        visits are never drawn), each visit gets its mission and size scale (step 4), its draws of product
        p are ``Poisson(lambda * m[s, p] * (rho_c r[c, p] + (1 - rho_c) g_p))`` (step 5: the repertoire and
        exploration totals split by product) and each draw its quantity (step 6). ``visits`` counts every
        visit, including those that bought nothing we sell. Promoted cells take ``lift ** lift_exponent``
        instead of the lift (1: the generator's own law; the oracle environment's promotion fatigue).
        Random draws differ from ``simulate_week_lines``'; the distribution of the cells' units does not.
        """
        pop = self.population
        stores, products = np.asarray(stores, dtype=np.int64), np.asarray(products, dtype=np.int64)
        price = np.asarray(price, dtype=np.float64)
        log_ratio = self._log_price_ratio(price)
        cells = np.ix_(stores, products)
        m = self.demand_multiplier(week_index, price, promo_depth, log_ratio)[cells]
        exponent = np.broadcast_to(np.asarray(lift_exponent, dtype=np.float64), m.shape)
        m = m * np.where(np.asarray(promo_depth)[cells] > 0, self._lift[products] ** (exponent - 1.0), 1.0)
        choice = self.store_choice_probs(price, log_ratio)  # [N, slots]
        to_store = np.stack([(choice * (pop.store_slots == s)).sum(1) for s in stores], axis=1)  # [N, M]
        visits = rng.poisson(pop.visit_rate[:, None] * self.traffic(week_index) * to_store)
        cust, store = np.nonzero(visits)
        cust, store = np.repeat(cust, visits[cust, store]), np.repeat(store, visits[cust, store])
        mission = draw_rows(self._mission_cum, cust, rng)
        shape = self._mission_shape[mission]
        scale = self._mission_items[mission] * rng.gamma(shape, 1.0 / shape)
        draws = rng.poisson(scale[:, None] * m[store] * self._item_mass(products)[cust])  # [visits, P']
        visit, column = np.nonzero(draws)
        counts = draws[visit, column]
        draw_cell = np.repeat(store[visit] * len(products) + column, counts)
        quantity = self._draw_quantities(np.repeat(products[column], counts), rng)
        units = np.bincount(draw_cell, weights=quantity, minlength=len(stores) * len(products))
        units = units.reshape(len(stores), len(products))
        return units, visits.sum(0).astype(np.float64)

    def _item_mass(self, products: np.ndarray) -> np.ndarray:
        """[N, P'] each customer's ``rho_c r[c, p] + (1 - rho_c) g_p`` at ``products``: fixed by the population,
        so kept per product set (an oracle environment asks for the same set every week; 60% of a call)."""
        key = tuple(products.tolist())
        if key not in self._item_masses:
            pop = self.population
            own = np.stack([((pop.repertoire == p) * pop.repertoire_weight).sum(1) for p in products], axis=1)
            rho = pop.repertoire_share[:, None]
            self._item_masses[key] = rho * own + (1.0 - rho) * self.catalog.popularity[products][None, :]
        return self._item_masses[key]

    def _draw_quantities(self, product: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        multi = rng.random(len(product)) < self.catalog.multipack[product]
        k = np.minimum(np.searchsorted(self._multi_cum, rng.random(len(product)), side="right"),
                       len(MULTI_QUANTITIES) - 1)
        return np.where(multi, MULTI_QUANTITIES[k], 1).astype(np.int32)

    def _assemble(
        self,
        week_index: int,
        price: np.ndarray,
        cust: np.ndarray,
        store: np.ndarray,
        mission: np.ndarray,
        visit: np.ndarray,
        product: np.ndarray,
        quantity: np.ndarray,
        rng: np.random.Generator,
    ) -> WeekLines:
        """Merge draws into lines, keep visits that bought something, and label the baskets."""
        n_p = self.n_products
        key, inverse = np.unique(visit.astype(np.int64) * n_p + product, return_inverse=True)
        line_qty = np.bincount(inverse, weights=quantity, minlength=len(key)).astype(np.int32)
        line_visit, line_product = key // n_p, key % n_p

        n_visits = len(cust)
        items = np.bincount(line_visit, minlength=n_visits)
        kept = np.flatnonzero(items > 0)
        basket_of_visit = np.cumsum(items > 0) - 1
        line_basket = basket_of_visit[line_visit]
        n_b = len(kept)
        if n_b >= BASKETS_PER_WEEK_MAX:
            raise ValueError(f"{n_b} baskets in one week exceed the BASKET_ID range ({BASKETS_PER_WEEK_MAX})")

        b_cust, b_store, b_mission = cust[kept], store[kept], mission[kept]
        day = draw_rows(self._weekday_cum, b_cust, rng)
        habitual = rng.random(n_b) < self.config.habit_hour_share
        hour = np.where(habitual, self.population.habit_hour[b_cust], HOURS[draw_categorical(HOUR_SHARES, n_b, rng)])
        unknown = self.config.unknown_label_share
        price_cents = np.round(price[b_store[line_basket], line_product] * 100).astype(np.int64)
        return WeekLines(
            week_index=week_index,
            n_visits=n_visits,
            basket_customer=b_cust,
            basket_store=b_store,
            basket_mission=b_mission,
            basket_day=day.astype(np.int8),
            basket_hour=hour.astype(np.int8),
            basket_id=BASKET_ID_BASE + week_index * BASKETS_PER_WEEK_MAX + 1 + np.arange(n_b, dtype=np.int64),
            basket_size=bk.basket_size(items[kept], b_mission),
            basket_type=bk.mask_unknown(b_mission, len(bk.TYPE_NAMES) - 1, unknown, rng),
            basket_dominant=bk.mask_unknown(
                bk.dominant_mission(line_basket, self._product_kind[line_product], n_b),
                len(bk.DOMINANT_NAMES) - 1, unknown, rng,
            ),
            basket_price_sensitivity=bk.mask_unknown(
                bk.price_sensitivity(line_basket, self.catalog.tier[line_product], n_b),
                len(bk.PRICE_SENSITIVITY_NAMES) - 1, unknown, rng,
            ),
            line_basket=line_basket,
            line_product=line_product,
            line_quantity=line_qty,
            line_spend_cents=price_cents * line_qty,
        )

    def simulate_week(
        self, week_index: int, price: np.ndarray, promo_depth: np.ndarray, rng: np.random.Generator
    ) -> pa.Table:
        """Sample one week; one row per line, LGSR "seg" column order, typed (null = missing)."""
        return self.to_table(self.simulate_week_lines(week_index, price, promo_depth, rng))

    # ----------------------------------------------------------------------------- LGSR table
    def _lgsr_dictionaries(self) -> dict[str, pa.Array]:
        """Per-product, per-customer and per-store LGSR strings, built once (take() by index later)."""
        if self._dicts is not None:
            return self._dicts
        cat, pop, st = self.catalog, self.population, self.stores
        anonymous = pop.anonymous
        seg1 = np.asarray(SEG1_NAMES)[pop.seg1]
        seg2 = np.asarray(SEG2_NAMES)[pop.seg2]
        self._dicts = {
            "PROD_CODE": pa.array(cat.prod_code),
            "PROD_CODE_10": pa.array(cat.class_code[cat.product_class]),
            "PROD_CODE_20": pa.array(cat.dept_code[cat.product_dept]),
            "PROD_CODE_30": pa.array(cat.group_code[cat.product_group]),
            "PROD_CODE_40": pa.array(cat.division_code[cat.product_division]),
            "CUST_CODE": pa.array(pop.code, pa.string(), mask=anonymous),
            "seg_1": pa.array(seg1, pa.string(), mask=anonymous),
            "seg_2": pa.array(seg2, pa.string(), mask=anonymous | (pop.seg2 == 0)),
            "STORE_CODE": pa.array(st.code),
            "STORE_FORMAT": pa.array(np.asarray(FORMAT_NAMES)[st.format]),
            "STORE_REGION": pa.array(np.asarray(REGION_NAMES)[st.region]),
            "BASKET_SIZE": pa.array(list(bk.SIZE_NAMES)),
            "BASKET_PRICE_SENSITIVITY": pa.array(list(bk.PRICE_SENSITIVITY_NAMES)),
            "BASKET_TYPE": pa.array(list(bk.TYPE_NAMES)),
            "BASKET_DOMINANT_MISSION": pa.array(list(bk.DOMINANT_NAMES)),
        }
        return self._dicts

    def to_table(self, lines: WeekLines) -> pa.Table:
        """LGSR "seg"-layout table of a simulated week (ints, floats, strings; null where missing)."""
        d = self._lgsr_dictionaries()
        lb = lines.line_basket
        prod = pa.array(lines.line_product)
        cust = pa.array(lines.basket_customer[lb])
        store = pa.array(lines.basket_store[lb])
        dates, weekdays = week_day_codes(self.config.start_date, lines.week_index)
        day = lines.basket_day[lb]
        n = lines.n_lines
        columns = {
            "SHOP_WEEK": pa.array(np.full(n, shop_week(self.config.start_week, lines.week_index), np.int32)),
            "SHOP_DATE": pa.array(dates[day]),
            "SHOP_WEEKDAY": pa.array(weekdays[day]),
            "SHOP_HOUR": pa.array(lines.basket_hour[lb]),
            "QUANTITY": pa.array(lines.line_quantity),
            "SPEND": pa.array(lines.line_spend_cents / 100.0),
            "BASKET_ID": pa.array(lines.basket_id[lb]).cast(pa.string()),
            "BASKET_SIZE": d["BASKET_SIZE"].take(pa.array(lines.basket_size[lb])),
            "BASKET_PRICE_SENSITIVITY": d["BASKET_PRICE_SENSITIVITY"].take(
                pa.array(lines.basket_price_sensitivity[lb])
            ),
            "BASKET_TYPE": d["BASKET_TYPE"].take(pa.array(lines.basket_type[lb])),
            "BASKET_DOMINANT_MISSION": d["BASKET_DOMINANT_MISSION"].take(pa.array(lines.basket_dominant[lb])),
        }
        for name in ("PROD_CODE", "PROD_CODE_10", "PROD_CODE_20", "PROD_CODE_30", "PROD_CODE_40"):
            columns[name] = d[name].take(prod)
        for name in ("CUST_CODE", "seg_1", "seg_2"):
            columns[name] = d[name].take(cust)
        for name in ("STORE_CODE", "STORE_FORMAT", "STORE_REGION"):
            columns[name] = d[name].take(store)
        return pa.table({name: columns[name] for name in layout_columns("seg")})
