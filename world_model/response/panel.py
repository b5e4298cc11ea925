"""The estimation panels of the price response, built from a work directory's training weeks.

``response_panel.parquet``: one row per (product, pricing zone, training week), zone = STORE_FORMAT /
STORE_REGION. Units are summed over the zone's stores; ``log_price`` is the mean log price of the zone's
product-store pairs in ``prices_derived.parquet`` (equal weights, so a week's sales do not choose its
price). Why zones, not stores: a product-store pair sells in a few weeks of the real sample, so a
store-level panel is mostly zeros at imputed prices; chains set prices and promotions by format and
region, and the zone sum of a multiplicative demand is again multiplicative with a zone effect, so the
elasticity and lift are the same parameters at either level. The panel is dense: every product-zone
group has every training week (``prices_derived`` holds every week of every pair).

``response_store_panel.parquet``: one row per (store, training week): baskets (trips) and the store's
log price level, ``sum_p share_sp * log price_spw`` with ``share`` the product's share of the store's
training revenue. The store-choice response is estimated from it (store effects absorb the constant).

``Panel`` reads the product panel back as [G, W] arrays per category, with the promotion flag of each
zone-week against the national regular price, a centred running median of the product's national
(median over stores) weekly price (``ResponseConfig.regular_window``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from world_model.data.duckdb_util import sql_string
from world_model.errors import RetailSimError
from world_model.response.poisson import two_way_residual

PRODUCT_PANEL = "response_panel.parquet"
STORE_PANEL = "response_store_panel.parquet"

ZONES = {"region": "any_value(STORE_REGION)", "format_region": "any_value(STORE_FORMAT) || '/' || any_value(STORE_REGION)"}
"""Pricing zones a panel can aggregate stores into (``ResponseConfig.zone``)."""


def write_panels(con: duckdb.DuckDBPyConnection, prices: Path, out: Path, zone: str = "region",
                 regular_window: int = 9) -> dict[str, int]:  # fmt: skip
    """Write both panels into ``out`` from the ``train_transactions`` view and ``prices_derived``."""
    if zone not in ZONES:
        raise ValueError(f"zone must be one of {', '.join(ZONES)}, got {zone!r}")
    zone_sql = ZONES[zone]
    prices_sql = f"read_parquet({sql_string(prices)})"
    con.execute(
        f"""CREATE TEMP TABLE store_zone AS
            SELECT STORE_CODE, {zone_sql} AS zone FROM train_transactions GROUP BY STORE_CODE"""
    )
    con.execute(
        """CREATE TEMP TABLE product_category AS
           SELECT PROD_CODE, any_value(PROD_CODE_20) AS category FROM train_transactions GROUP BY 1"""
    )
    con.execute(
        f"""CREATE TEMP TABLE observed AS
            SELECT PROD_CODE, STORE_CODE, week_index, ln(actual_price) AS lp
            FROM {prices_sql} WHERE split = 'train' AND price_source = 'observed'"""
    )
    # The national price of a product-week (median over the stores that sold it: robust to regional
    # promotions), each store's offset from it, and the national regular price (centred running median).
    con.execute(
        """CREATE TEMP TABLE national AS
           SELECT PROD_CODE, week_index, median(lp) AS nat FROM observed GROUP BY ALL"""
    )
    con.execute(
        """CREATE TEMP TABLE offsets AS
           SELECT o.PROD_CODE, o.STORE_CODE, median(o.lp - n.nat) AS offset
           FROM observed o JOIN national n USING (PROD_CODE, week_index) GROUP BY ALL"""
    )
    half = regular_window // 2
    con.execute(
        f"""COPY (
              WITH groups AS (
                SELECT DISTINCT p.PROD_CODE, z.zone FROM {prices_sql} p JOIN store_zone z USING (STORE_CODE)
                WHERE p.split = 'train' AND p.units > 0),
              weeks AS (SELECT DISTINCT week_index FROM {prices_sql} WHERE split = 'train'),
              product_weeks AS (
                SELECT g.PROD_CODE, w.week_index,
                       median(n.nat) OVER (PARTITION BY g.PROD_CODE ORDER BY w.week_index
                                           ROWS BETWEEN {half} PRECEDING AND {half} FOLLOWING) AS regular
                FROM (SELECT DISTINCT PROD_CODE FROM groups) g CROSS JOIN weeks w
                LEFT JOIN national n USING (PROD_CODE, week_index)),
              units AS (
                SELECT p.PROD_CODE, z.zone, p.week_index, sum(p.units)::BIGINT AS units
                FROM {prices_sql} p JOIN store_zone z USING (STORE_CODE) WHERE p.split = 'train' GROUP BY ALL),
              zone_prices AS (
                SELECT o.PROD_CODE, z.zone, o.week_index, avg(o.lp - f.offset) AS log_price
                FROM observed o JOIN offsets f USING (PROD_CODE, STORE_CODE) JOIN store_zone z USING (STORE_CODE)
                GROUP BY ALL)
              SELECT c.category, g.PROD_CODE, g.zone, pw.week_index, coalesce(u.units, 0)::BIGINT AS units,
                     zp.log_price,
                     coalesce(pw.regular, median(pw.regular) OVER (PARTITION BY g.PROD_CODE)) AS regular_log_price
              FROM groups g JOIN product_category c USING (PROD_CODE)
              JOIN product_weeks pw USING (PROD_CODE)
              LEFT JOIN units u USING (PROD_CODE, zone, week_index)
              LEFT JOIN zone_prices zp USING (PROD_CODE, zone, week_index)
              ORDER BY c.category, g.PROD_CODE, g.zone, pw.week_index
            ) TO {sql_string(out / PRODUCT_PANEL)} (FORMAT parquet, COMPRESSION zstd)"""
    )
    con.execute(
        f"""COPY (
              WITH revenue AS (
                SELECT STORE_CODE, PROD_CODE, sum(SPEND) / sum(sum(SPEND)) OVER (PARTITION BY STORE_CODE) AS share
                FROM train_transactions GROUP BY STORE_CODE, PROD_CODE HAVING sum(SPEND) > 0),
              level AS (
                SELECT p.STORE_CODE, p.week_index, sum(r.share * ln(p.actual_price)) AS log_level
                FROM {prices_sql} p JOIN revenue r USING (STORE_CODE, PROD_CODE)
                WHERE p.split = 'train' GROUP BY ALL),
              trips AS (
                SELECT STORE_CODE, week_index, count(DISTINCT BASKET_ID) AS baskets
                FROM train_transactions GROUP BY ALL)
              SELECT l.STORE_CODE, l.week_index, coalesce(t.baskets, 0)::BIGINT AS baskets, l.log_level
              FROM level l LEFT JOIN trips t USING (STORE_CODE, week_index)
              ORDER BY l.STORE_CODE, l.week_index
            ) TO {sql_string(out / STORE_PANEL)} (FORMAT parquet, COMPRESSION zstd)"""
    )
    return {
        name: con.execute(f"SELECT count(*) FROM read_parquet({sql_string(out / name)})").fetchone()[0]
        for name in (PRODUCT_PANEL, STORE_PANEL)
    }


def store_loyalty(con: duckdb.DuckDBPyConnection) -> float:
    """Trip-weighted mean share of a card holder's training trips that go to the store of the trip.

    Converts the aggregate elasticity of a store's visits to its price level into the per-shopper
    store-choice sensitivity: tilting each shopper's store probabilities ``q_s`` by ``level_s^-gamma``
    moves store s's visits by ``-gamma * (1 - loyalty_s)`` in elasticity terms."""
    value = con.execute(
        """SELECT sum(trips * trips / total) / sum(trips) FROM (
             SELECT trips, sum(trips) OVER (PARTITION BY CUST_CODE) AS total FROM (
               SELECT CUST_CODE, STORE_CODE, count(DISTINCT BASKET_ID)::DOUBLE AS trips
               FROM train_transactions WHERE CUST_CODE IS NOT NULL AND CUST_CODE <> '' GROUP BY ALL))"""
    ).fetchone()[0]
    return float(value) if value is not None else 0.0


@dataclass
class CategoryPanel:
    """One category's dense panel: G product-zone series x W weeks (weeks with no units dropped)."""

    category: str
    products: np.ndarray
    """[G] PROD_CODE of each series."""
    weeks: np.ndarray
    """[W] week indices kept."""
    units: np.ndarray
    """[G, W] units sold."""
    log_price: np.ndarray
    """[G, W] log shelf price of the zone, net of store offsets (the regular price where unobserved)."""
    promo: np.ndarray
    """[G, W] 1.0 where the price is more than the threshold below the regular price."""
    regular_log_price: np.ndarray
    """[G, W] the product's national regular log price (the same for every zone of a product)."""
    series_total: int = 0
    """Series of the category before dropping the sparsely observed ones."""

    def price_variation(self) -> float:
        """What identifies the elasticity once the fixed effects have taken theirs."""
        return two_way_residual_sd(self.log_price)


def two_way_residual_sd(x: np.ndarray) -> float:
    """Standard deviation of a [G, W] array after removing row and column means (0 when empty)."""
    if not x.size:
        return 0.0
    return float(two_way_residual(x).std())


class Panel:
    """The product panel of a work directory, served per category.

    A zone-week's price is observed only when the zone sold the product that week; unobserved weeks get
    the national regular price and no promotion. That guess is wrong exactly when demand would have
    been high (a promotion the data cannot see), and a zero-sale week is where it is made, so a series
    with many unobserved weeks biases the lift up and the elasticity toward zero (measured on the
    synthetic market). Series observed in fewer than ``min_observed_share`` of the weeks are dropped:
    a choice on the series' size, which the series effects absorb, not on its weekly outcomes.
    """

    def __init__(self, path: Path, promo_threshold: float, min_observed_share: float) -> None:
        if not path.exists():
            raise RetailSimError(f"{path}: missing; run 'retailsim pipeline run' (stage price_response) first")
        frame = pd.read_parquet(path)
        self.path, self.frame = path, frame
        self.promo_threshold, self.min_observed_share = promo_threshold, min_observed_share
        codes = frame["category"].to_numpy()
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else np.zeros(0, np.int64)
        self._ranges = dict(zip(codes[starts], zip(starts, np.r_[starts[1:], len(frame)])))

    @property
    def categories(self) -> list[str]:
        return list(self._ranges)

    def category(self, name: str) -> CategoryPanel:
        start, stop = self._ranges[name]
        part = self.frame.iloc[start:stop]
        weeks = np.unique(part["week_index"].to_numpy())
        n_weeks = len(weeks)
        if len(part) % n_weeks:
            raise RetailSimError(f"{self.path}: category {name} is not a dense product-zone x week panel")
        shape = (len(part) // n_weeks, n_weeks)
        units = part["units"].to_numpy(np.float64).reshape(shape)
        log_price = part["log_price"].to_numpy(np.float64, na_value=np.nan).reshape(shape)
        regular = part["regular_log_price"].to_numpy(np.float64, na_value=np.nan).reshape(shape)
        products = part["PROD_CODE"].to_numpy()[::n_weeks]
        sold = units.sum(axis=0) > 0  # a week missing from the data has no units anywhere
        observed = ~np.isnan(log_price)
        keep = observed[:, sold].mean(axis=1) >= self.min_observed_share if sold.any() else np.zeros(shape[0], bool)
        units, log_price, regular = units[keep][:, sold], log_price[keep][:, sold], regular[keep][:, sold]
        log_price = np.where(np.isnan(log_price), regular, log_price)
        promo = (log_price < regular + np.log1p(-self.promo_threshold)).astype(np.float64)
        return CategoryPanel(name, products[keep], weeks[sold], units, log_price, promo, regular, series_total=shape[0])
