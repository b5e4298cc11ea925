"""What the training weeks sold per store and product, and at what response multiplier: the history level.

The world models learned from every basket of the training weeks, promotions and other prices included,
and from card holders only. So at the reference price without a promotion their expected units are the
history's average conditions, not the plain ones, and miss the card-less baskets. The simulators correct
that with one factor per store and product:

    level = history_units / (models' units at reference prices x history_multiplier)

with ``history_units`` the training weeks' mean weekly units (every basket, from ``prices_derived``) and
``history_multiplier`` the mean over those weeks of the response multiplier they were sold at against the
reference price, ``(paid / reference) ** elasticity x lift ** promoted``. At the training weeks' own prices
and promotions the leveled units then average to what the store sold (without the store-choice channel,
which the level does not model). Used by the scenario bundle (``retailsim_env.scenario``, which stores
both arrays for the environments) and by ``DemandSimulator`` (``retailsim whatif``, ``evaluate-response``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from world_model.data.duckdb_util import sql_string


def history_units_and_multiplier(prices: Path, store_codes: Sequence[str], product_codes: Sequence[str],
                                 elasticity: np.ndarray, lift: np.ndarray, reference: np.ndarray,
                                 season: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """([S, P] mean weekly units, [S, P] mean response multiplier) of the training weeks for the given
    stores and products (module docstring), from the ``prices_derived.parquet`` table at ``prices``;
    ``elasticity`` and ``lift`` [P] per product, ``reference`` [S, P] the reference prices, ``season``
    [P, weeks + 1] (by data week index) a demand index the market applies as well
    (``world_model.response.season``): the multiplier is then of the weeks' response x season, so that
    the seasonal market too averages the history exactly. Rows with no paid price are left out (no
    multiplier); the mean is over every training week with a paid price at any store, so a
    store-product the history never sold has 0 units and multiplier 1."""
    units, (multiplier,) = history_units_and_multipliers(prices, store_codes, product_codes, elasticity, lift,
                                                         reference, [season])  # fmt: skip
    return units, multiplier


def history_units_and_multipliers(prices: Path, store_codes: Sequence[str], product_codes: Sequence[str],
                                  elasticity: np.ndarray, lift: np.ndarray, reference: np.ndarray,
                                  seasons: Sequence[np.ndarray | None]) -> tuple[np.ndarray, list[np.ndarray]]:  # fmt: skip
    """``history_units_and_multiplier`` for several ``seasons`` (each None or [P, weeks + 1]) from one
    scan of the table: the units and one multiplier per season."""
    with duckdb.connect() as con:
        n_weeks = con.execute(
            f"""SELECT count(DISTINCT week_index) FROM read_parquet({sql_string(prices)})
                WHERE split = 'train' AND actual_price > 0"""
        ).fetchall()[0][0]
        con.register("wanted_stores", pd.DataFrame({"STORE_CODE": list(store_codes)}))
        weeks = con.execute(
            f"""SELECT STORE_CODE, PROD_CODE, week_index, units, actual_price, promo_flag
                FROM read_parquet({sql_string(prices)}) JOIN wanted_stores USING (STORE_CODE)
                WHERE split = 'train' AND actual_price > 0
                ORDER BY STORE_CODE, PROD_CODE, week_index"""
        ).df()
    s = weeks["STORE_CODE"].map({code: i for i, code in enumerate(store_codes)})
    p = weeks["PROD_CODE"].map({code: i for i, code in enumerate(product_codes)})
    keep = s.notna() & p.notna()
    weeks = weeks[keep].assign(s=s[keep].astype(int), p=p[keep].astype(int))
    e, lift_p = np.asarray(elasticity)[weeks["p"]], np.asarray(lift)[weeks["p"]]
    ratio = weeks["actual_price"].to_numpy(np.float64) / np.asarray(reference)[weeks["s"], weeks["p"]].astype(np.float64)
    response = ratio**e * np.where(weeks["promo_flag"].to_numpy(bool), lift_p, 1.0)
    columns = [f"multiplier_{i}" for i in range(len(seasons))]
    for column, season in zip(columns, seasons):
        weeks[column] = response if season is None else response * np.asarray(season)[weeks["p"], weeks["week_index"]]
    shape = (len(store_codes), len(product_codes))
    grouped = weeks.groupby(["s", "p"]).agg(units=("units", "sum"), **{c: (c, "mean") for c in columns}).reset_index()
    units = np.zeros(shape)
    units[grouped["s"], grouped["p"]] = grouped["units"] / max(n_weeks, 1)
    multipliers = [np.ones(shape) for _ in columns]
    for column, multiplier in zip(columns, multipliers):
        multiplier[grouped["s"], grouped["p"]] = grouped[column]
    return units, multipliers


def history_level(units: np.ndarray, multiplier: np.ndarray, model_units: np.ndarray) -> np.ndarray:
    """The level (module docstring) from the history's ``units`` and ``multiplier`` and the models' units
    at reference prices, elementwise; 1 where the history has no units or the models none."""
    known = (units > 0) & (model_units * multiplier > 0)
    return np.where(known, units / np.where(known, model_units * multiplier, 1.0), 1.0)
