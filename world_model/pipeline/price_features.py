"""Stage ``price_features``: 64 price features per (product, store, week), computed on demand.

The world model reads a 64-d price vector for every item it scores (T4). Storing it for every row of
``prices_derived.parquet`` is out of the question (76M rows x 64 floats on the real sample), and the
environment must also encode prices that never happened (an agent's counterfactual price). So the stage
only *fits*: per-product statistics and global normalizers, from the training rows of prices_derived,
into two small artifacts. ``PriceFeatureEncoder`` turns six raw numbers per (product, store, week)
(``RAW_PRICE_COLUMNS``, fetched in one DuckDB pass by ``price_inputs_sql``) into the 64 features:

- ``fourier`` 24: sin/cos at 6 frequencies of two bounded signals, the log price relative to the
  product's training median (clipped to +-ln 3, the outlier bounds of prices.py) and the discount depth;
- ``log_price`` 16: log actual and base price standardized globally and per product, one-hot of 12
  global quantile bins of the log actual price;
- ``relative_price`` 16: price/base, discount depth, promo flag, discount bin, log ratios to the
  product and category medians, known and fallback flags, product promo share and price spread;
- ``velocity`` 8: log price change vs 1 and 4 weeks earlier, their sizes, up/down flags, last week's
  units (standardized, and relative to the product's training mean).

Fits read rows with split = 'train' only. Price statistics (medians, spreads, moments, bin edges, promo
share) and the global units standardizer use ``price_source = 'observed'`` rows: imputed rows repeat
neighbours' prices and would make slow sellers, which are mostly imputed, dominate (and, with their zero
units, push one sold unit past the clip). A product's mean log1p units is over all its training rows, a
sales rate per pair-week with zeros. Lags look backwards only. So the artifacts are identical on data
cut at the end of training. Unknown pairs fall back to the product's median price; unknown products
encode as all zeros.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from world_model.data.duckdb_util import fetch_arrow, sql_string
from world_model.errors import RetailSimError
from world_model.pipeline.prices import DEPTH_DECIMALS, DISCOUNT_BINS, weighted_median_sql
from world_model.pipeline.prices import OUTPUT as PRICES_FILE
from world_model.pipeline.product_features import EMBEDDING_INDEX_FILE
from world_model.pipeline.product_graph import NODES
from world_model.pipeline.runner import Stage, StageContext

STATS_FILE = "price_feature_stats.parquet"
NORMALIZERS_FILE = "price_feature_normalizers.json"

RAW_PRICE_COLUMNS = ("actual_price", "base_price", "price_lag1", "price_lag4", "units_lag1", "known")
"""Raw inputs of the encoder, in this order; ``price_inputs_sql`` returns them as DOUBLE."""

FOURIER_DIM, LOG_PRICE_DIM, RELATIVE_PRICE_DIM, VELOCITY_DIM = 24, 16, 16, 8
PRICE_FEATURE_DIM = FOURIER_DIM + LOG_PRICE_DIM + RELATIVE_PRICE_DIM + VELOCITY_DIM
PRICE_BLOCKS = (("fourier", FOURIER_DIM), ("log_price", LOG_PRICE_DIM),
                ("relative_price", RELATIVE_PRICE_DIM), ("velocity", VELOCITY_DIM))

FOURIER_FREQUENCIES = (1, 2, 4, 8, 16, 32)
"""A signal u in [0, 1] gives sin(pi f u), cos(pi f u) per f; f = 1 alone is already one-to-one on [0, 1].
Powers of two: ``_fourier`` gets each frequency from the previous one by doubling."""
FOURIER_LOG_RANGE = math.log(3.0)
"""log(price / product median) is clipped to +-ln 3 (prices.py drops lines outside [m/3, 3m]) for Fourier."""
PRICE_BINS = 12
LOG_RATIO_CLIP = 3.0
"""Log ratios and log changes are clipped to +-3 (a factor of 20): counterfactual prices stay bounded."""
Z_CLIP = 5.0
"""Standardized values are clipped to +-5."""
MIN_SPREAD = 0.05
"""Floor of a product's log-price spread when standardizing per product (a never-changing price has 0)."""
CHANGE_EPS = 0.01
"""A log price change beyond +-0.01 (about 1%) counts as a move up or down."""
PRICE_RANGE = (1e-6, 1e9)
"""Valid prices are clipped into this range before logs and ratios."""


def _column_meanings() -> list[tuple[str, str, str]]:
    """(block, name, meaning) of the 64 columns, in order; blocks are zero-padded to their width."""
    cols: list[tuple[str, str, str]] = []
    for signal, what in (("rel_log_price", "(clip(log(price/product median), +-ln3)/ln3 + 1)/2"),
                         ("depth", "discount depth")):
        for f in FOURIER_FREQUENCIES:
            for fn in ("sin", "cos"):
                cols.append(("fourier", f"fourier__{signal}_{fn}_{f}", f"{fn}(pi*{f}*u), u = {what}"))
    cols += [
        ("log_price", "log_price__z_actual_global", "(log actual - global mean) / global std"),
        ("log_price", "log_price__z_base_global", "(log base - global mean of log actual) / its std"),
        ("log_price", "log_price__z_actual_product", "(log actual - product median) / max(spread, 0.05)"),
        ("log_price", "log_price__z_base_product", "(log base - product median) / max(spread, 0.05)"),
    ]
    cols += [("log_price", f"log_price__bin_{i}", f"log actual price in global quantile bin {i} of 12")
             for i in range(PRICE_BINS)]
    cols += [
        ("relative_price", "relative_price__price_to_base", "actual / base, at most e^3"),
        ("relative_price", "relative_price__discount_depth", "max(0, 1 - actual / base), rounded to 1e-6"),
        ("relative_price", "relative_price__promo_flag", "discount depth > promo_threshold"),
    ]
    cols += [("relative_price", f"relative_price__bin_{name}", f"discount bin {name} (bounds of prices.py)")
             for name in (*(n for n, _ in DISCOUNT_BINS), "deep")]
    cols += [
        ("relative_price", "relative_price__log_vs_product_median", "log actual - product median"),
        ("relative_price", "relative_price__log_vs_category_median", "log actual - category median"),
        ("relative_price", "relative_price__product_vs_category_median", "product median - category median"),
        ("relative_price", "relative_price__log_base_vs_product_median", "log base - product median"),
        ("relative_price", "relative_price__known", "1 when the pair-week is in prices_derived"),
        ("relative_price", "relative_price__price_fallback", "1 when actual price was missing: product median used"),
        ("relative_price", "relative_price__product_promo_share", "share of the product's observed training rows promoted"),
        ("relative_price", "relative_price__product_log_spread", "std of the product's observed training log prices"),
        ("velocity", "velocity__dlog_1", "log actual - log price 1 week earlier"),
        ("velocity", "velocity__dlog_4", "log actual - log price 4 weeks earlier"),
        ("velocity", "velocity__abs_dlog_1", "|dlog_1|"),
        ("velocity", "velocity__abs_dlog_4", "|dlog_4|"),
        ("velocity", "velocity__up_1", "dlog_1 > 0.01"),
        ("velocity", "velocity__down_1", "dlog_1 < -0.01"),
        ("velocity", "velocity__z_log1p_units_lag1", "(log1p(units last week) - mean) / std over observed training rows"),
        ("velocity", "velocity__log1p_units_lag1_vs_product", "log1p(units last week) - product training mean"),
    ]
    padded = []
    for block, width in PRICE_BLOCKS:
        mine = [c for c in cols if c[0] == block]
        assert len(mine) <= width, block
        padded += mine + [(block, f"{block}__pad_{i}", "zero") for i in range(width - len(mine))]
    return padded


PRICE_FEATURE_COLUMNS = _column_meanings()
PRICE_FEATURE_NAMES = tuple(name for _, name, _ in PRICE_FEATURE_COLUMNS)


def _block_ranges() -> list[dict]:
    """[{name, start, stop, used}] of the four blocks; ``used`` counts the non-padding columns."""
    ranges, start = [], 0
    for name, width in PRICE_BLOCKS:
        used = sum(1 for b, n, _ in PRICE_FEATURE_COLUMNS if b == name and "__pad_" not in n)
        ranges.append({"name": name, "start": start, "stop": start + width, "used": used})
        start += width
    return ranges


def price_inputs_sql(keys: str, prices: str) -> str:
    """SQL: ``keys``.* plus ``RAW_PRICE_COLUMNS`` (DOUBLE), one row per key row, in no particular order.

    ``keys`` names a relation with PROD_CODE, STORE_CODE, week_index (other columns pass through; carry a
    row id to restore an order); ``prices`` is a SQL expression for prices_derived. Each key becomes three
    lookups (the week, 1 and 4 weeks earlier) joined to prices in one hash join, then pivoted back: one
    scan of prices however many keys. A lag before week 1 is the current price; units_lag1 is 0 without a
    row; a pair absent from prices has known = 0 and NULL prices.
    """
    return f"""
        WITH _k AS MATERIALIZED (SELECT *, row_number() OVER () AS _price_key FROM {keys}),
        _hit AS (
            SELECT l._price_key, l._lag, p.actual_price, p.base_price, p.units
            FROM (SELECT _price_key, PROD_CODE::VARCHAR AS PROD_CODE, STORE_CODE::VARCHAR AS STORE_CODE,
                         week_index - _lag AS week_index, _lag
                  FROM _k, (VALUES (0), (1), (4)) _v(_lag)) l
            JOIN (SELECT PROD_CODE::VARCHAR AS PROD_CODE, STORE_CODE::VARCHAR AS STORE_CODE, week_index,
                         actual_price, base_price, units FROM {prices}) p
              ON p.PROD_CODE = l.PROD_CODE AND p.STORE_CODE = l.STORE_CODE AND p.week_index = l.week_index),
        _row AS (
            SELECT _price_key, max(actual_price) FILTER (_lag = 0) AS a0, max(base_price) FILTER (_lag = 0) AS b0,
                   max(actual_price) FILTER (_lag = 1) AS a1, max(units) FILTER (_lag = 1) AS u1,
                   max(actual_price) FILTER (_lag = 4) AS a4
            FROM _hit GROUP BY _price_key)
        SELECT _k.* EXCLUDE (_price_key), a0::DOUBLE AS actual_price, b0::DOUBLE AS base_price,
               (CASE WHEN _k.week_index - 1 < 1 THEN a0 ELSE a1 END)::DOUBLE AS price_lag1,
               (CASE WHEN _k.week_index - 4 < 1 THEN a0 ELSE a4 END)::DOUBLE AS price_lag4,
               coalesce(u1, 0)::DOUBLE AS units_lag1, (a0 IS NOT NULL)::DOUBLE AS known
        FROM _k LEFT JOIN _row USING (_price_key)"""


def _weighted_quantiles(source: str, value: str, qs: list[float]) -> str:
    """SQL of one row: per q, the smallest value whose cumulative share reaches q (inverted CDF), over
    values first counted per distinct value (windows and GROUP BY spill; quantile() would not)."""
    picks = ", ".join(f"min(v) FILTER (WHERE upto >= {q!r} * total)" for q in qs)
    return f"""SELECT {picks} FROM (
                   SELECT v, sum(n) OVER (ORDER BY v ROWS UNBOUNDED PRECEDING) AS upto, sum(n) OVER () AS total
                   FROM (SELECT {value} AS v, count(*) AS n FROM ({source}) GROUP BY 1))"""


def build_price_features(ctx: StageContext) -> dict[str, int]:
    """Fit the per-product statistics and global normalizers on the training rows of prices_derived."""
    prices = sql_string(ctx.artifact("processed", PRICES_FILE))
    index = pd.read_parquet(ctx.artifact("features", EMBEDDING_INDEX_FILE), columns=["PROD_CODE", "row"])
    nodes = pd.read_parquet(ctx.artifact("processed", NODES), columns=["PROD_CODE", "PROD_CODE_20"])
    if not np.array_equal(index["row"].to_numpy(), np.arange(len(index))):
        raise RetailSimError(f"{EMBEDDING_INDEX_FILE}: column row is not 0..n-1 in file order")
    con = ctx.connect()
    try:
        con.execute(
            f"""CREATE TEMP VIEW train AS
                SELECT PROD_CODE::VARCHAR AS PROD_CODE, ln(actual_price) AS lp, ln(1 + units) AS lu,
                       promo_flag, price_source::VARCHAR = 'observed' AS observed
                FROM read_parquet({prices}) WHERE split::VARCHAR = 'train' AND actual_price > 0"""
        )
        medians = weighted_median_sql("SELECT PROD_CODE, observed, lp, count(*) AS n FROM train GROUP BY ALL",
                                   "PROD_CODE, observed", "lp", "n", "median_log_price")
        per_product = fetch_arrow(con, f"""
            SELECT s.*, m.median_log_price FROM (
                SELECT PROD_CODE, count(*) AS train_rows, count(*) FILTER (observed) AS observed_rows,
                       stddev_pop(lp) FILTER (observed) AS log_price_spread, avg(lu) AS mean_log1p_units,
                       avg(promo_flag::DOUBLE) FILTER (observed) AS promo_share,
                       bool_or(observed) AS any_observed
                FROM train GROUP BY PROD_CODE) s
            JOIN ({medians}) m ON m.PROD_CODE = s.PROD_CODE AND m.observed = s.any_observed""").to_pandas()
        (mu, sd, mu_u, sd_u, rows, observed), = con.execute(
            """SELECT avg(lp) FILTER (observed), stddev_pop(lp) FILTER (observed), avg(lu) FILTER (observed),
                      stddev_pop(lu) FILTER (observed),
                      count(*), count(*) FILTER (observed) FROM train""").fetchall()
        qs = [i / PRICE_BINS for i in range(1, PRICE_BINS)]
        edges = con.execute(_weighted_quantiles("SELECT lp FROM train WHERE observed", "lp", qs)).fetchone()
    finally:
        con.close()
    if not observed:
        raise RetailSimError(f"{PRICES_FILE}: no observed price in the training weeks (split = 'train')")
    stats = (index.merge(nodes, on="PROD_CODE", how="left", validate="1:1")
             .merge(per_product.drop(columns="any_observed"), on="PROD_CODE", how="left", validate="1:1"))
    # A product of the index without training rows (stale artifacts) gets global values, not NaN.
    stats = stats.fillna({"train_rows": 0, "observed_rows": 0, "median_log_price": mu, "log_price_spread": 0.0,
                          "mean_log1p_units": 0.0, "promo_share": 0.0})
    category = stats.groupby("PROD_CODE_20", dropna=True)["median_log_price"].median()
    stats["category_median_log_price"] = (
        stats["PROD_CODE_20"].map(category).astype("float64").fillna(stats["median_log_price"]))
    stats = stats.astype({"row": "int32", "train_rows": "int64", "observed_rows": "int64"})
    stats = stats[["PROD_CODE", "row", "PROD_CODE_20", "train_rows", "observed_rows", "median_log_price",
                   "log_price_spread", "category_median_log_price", "mean_log1p_units", "promo_share"]]
    stats.to_parquet(ctx.out / STATS_FILE, index=False)
    normalizers = {
        "dim": PRICE_FEATURE_DIM,
        "fit": "prices_derived rows with split='train'; global moments, bin edges and per-product price "
               "statistics over price_source='observed' rows; per-product mean log1p units over all of them",
        "train_rows": int(rows), "observed_train_rows": int(observed), "products": len(stats),
        "log_price_mean": mu, "log_price_std": sd or 0.0, "log1p_units_mean": mu_u, "log1p_units_std": sd_u or 0.0,
        "log_price_bin_edges": [float(e) for e in edges],
        "promo_threshold": ctx.config.promo_threshold,
        "discount_bins": [[name, bound] for name, bound in DISCOUNT_BINS],
        "fourier_frequencies": list(FOURIER_FREQUENCIES), "fourier_log_range": FOURIER_LOG_RANGE,
        "log_ratio_clip": LOG_RATIO_CLIP, "z_clip": Z_CLIP, "min_spread": MIN_SPREAD, "change_eps": CHANGE_EPS,
        "raw_columns": list(RAW_PRICE_COLUMNS),
        "blocks": _block_ranges(),
        "columns": [{"name": n, "block": b, "meaning": m} for b, n, m in PRICE_FEATURE_COLUMNS],
    }
    (ctx.out / NORMALIZERS_FILE).write_text(json.dumps(normalizers, indent=2) + "\n")
    return {STATS_FILE: len(stats), NORMALIZERS_FILE: PRICE_FEATURE_DIM}


def _fourier(u: np.ndarray) -> list[np.ndarray]:
    """sin, cos of pi f u for f in FOURIER_FREQUENCIES (1, 2, 4, ...): one sin and cos, then doubling
    (sin 2x = 2 sin x cos x, cos 2x = 1 - 2 sin^2 x); the error stays below 1e-13 at f = 32."""
    sin, cos = np.sin(np.pi * u), np.cos(np.pi * u)
    columns = []
    for i, _ in enumerate(FOURIER_FREQUENCIES):
        if i:
            sin, cos = 2.0 * sin * cos, 1.0 - 2.0 * sin * sin
        columns += [sin, cos]
    return columns


class PriceFeatureEncoder:
    """The 64 price features from raw inputs, with the statistics fitted by the stage."""

    CHUNK = 32768
    """Rows encoded at a time: the temporaries stay in cache and memory stays flat for any n."""
    PRODUCT_COLUMNS = ("median_log_price", "log_price_spread", "category_median_log_price", "mean_log1p_units",
                       "promo_share")

    def __init__(self, stats: pd.DataFrame, normalizers: dict) -> None:
        self.stats, self.normalizers = stats, normalizers
        self._product = stats[list(self.PRODUCT_COLUMNS)].to_numpy(np.float64).reshape(-1, len(self.PRODUCT_COLUMNS))

    @classmethod
    def load(cls, features_dir: Path) -> "PriceFeatureEncoder":
        stats = pd.read_parquet(Path(features_dir) / STATS_FILE)
        normalizers = json.loads((Path(features_dir) / NORMALIZERS_FILE).read_text())
        if [c["name"] for c in normalizers["columns"]] != list(PRICE_FEATURE_NAMES):
            raise RetailSimError(f"{NORMALIZERS_FILE}: columns differ from this code's layout (rerun price_features)")
        if not np.array_equal(stats["row"].to_numpy(), np.arange(len(stats))):
            raise RetailSimError(f"{STATS_FILE}: column row is not 0..n-1 in file order")
        return cls(stats, normalizers)

    def encode(self, raw: np.ndarray, product_index_rows: np.ndarray) -> np.ndarray:
        """float32 [n, 64] from raw [n, 6] (``RAW_PRICE_COLUMNS``) and product index rows [n] (-1: unknown).

        Missing, non-positive or infinite prices fall back (actual -> product median price, base ->
        actual, lags -> actual); unknown products (row outside the index) get an all-zero row.
        """
        raw = np.asarray(raw, dtype=np.float64)
        rows = np.asarray(product_index_rows, dtype=np.int64)
        if raw.ndim != 2 or raw.shape[1] != len(RAW_PRICE_COLUMNS) or rows.shape != (len(raw),):
            raise ValueError(f"expected raw [n, {len(RAW_PRICE_COLUMNS)}] and rows [n], got {raw.shape}, {rows.shape}")
        out = np.zeros((len(raw), PRICE_FEATURE_DIM), dtype=np.float32)
        for start in range(0, len(raw), self.CHUNK):
            chunk = slice(start, start + self.CHUNK)
            self._encode(raw[chunk], rows[chunk], out[chunk])
        out[~np.isfinite(out)] = 0.0  # cannot happen (everything is clipped); a last guard for the model
        return out

    def _encode(self, raw: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
        norm = self.normalizers
        product_known = (rows >= 0) & (rows < len(self._product))
        if not product_known.any():
            return
        med, spread_raw, category, mean_lu, promo_share = (
            self._product[np.where(product_known, rows, 0)].T if len(self._product) else np.zeros((5, len(rows))))

        def price(values: np.ndarray, fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            valid = np.isfinite(values) & (values > 0)
            return np.clip(np.where(valid, values, fallback), *PRICE_RANGE), valid

        def clip(x: np.ndarray, bound: float = LOG_RATIO_CLIP) -> np.ndarray:
            return np.clip(x, -bound, bound)

        def z(x: np.ndarray, mean: float | np.ndarray, std: float | np.ndarray) -> np.ndarray:
            return clip((x - mean) / std, Z_CLIP)

        actual, has_actual = price(raw[:, 0], np.exp(med))
        base, _ = price(raw[:, 1], actual)
        lag1, _ = price(raw[:, 2], actual)
        lag4, _ = price(raw[:, 3], actual)
        units = np.where(np.isfinite(raw[:, 4]) & (raw[:, 4] > 0), np.minimum(raw[:, 4], 1e12), 0.0)
        la, lb, lu = np.log(actual), np.log(base), np.log1p(units)
        ratio = actual / base
        depth = np.round(np.clip(1.0 - ratio, 0.0, 1.0), DEPTH_DECIMALS)
        sd = norm["log_price_std"] if norm["log_price_std"] > 1e-12 else 1.0
        sd_u = norm["log1p_units_std"] if norm["log1p_units_std"] > 1e-12 else 1.0
        spread = np.maximum(spread_raw, MIN_SPREAD)
        u_rel = (clip(la - med, FOURIER_LOG_RANGE) / FOURIER_LOG_RANGE + 1.0) / 2.0
        price_bin = np.searchsorted(np.asarray(norm["log_price_bin_edges"]), la, side="right")
        bounds = [b for _, b in norm["discount_bins"]]
        discount_bin = np.searchsorted(np.asarray(bounds), depth, side="left")  # bounds are inclusive
        dlog1, dlog4 = clip(la - np.log(lag1)), clip(la - np.log(lag4))
        blocks = {
            "fourier": _fourier(u_rel) + _fourier(depth),
            "log_price": [z(la, norm["log_price_mean"], sd), z(lb, norm["log_price_mean"], sd),
                          z(la, med, spread), z(lb, med, spread)]
                         + [price_bin == i for i in range(PRICE_BINS)],
            "relative_price": [np.minimum(ratio, math.exp(LOG_RATIO_CLIP)), depth, depth > norm["promo_threshold"]]
                              + [discount_bin == i for i in range(len(bounds) + 1)]
                              + [clip(la - med), clip(la - category), clip(med - category), clip(lb - med),
                                 np.nan_to_num(raw[:, 5]) == 1, ~has_actual, promo_share,
                                 np.clip(spread_raw, 0.0, LOG_RATIO_CLIP)],
            "velocity": [dlog1, dlog4, np.abs(dlog1), np.abs(dlog4), dlog1 > CHANGE_EPS, dlog1 < -CHANGE_EPS,
                         z(lu, norm["log1p_units_mean"], sd_u), clip(lu - mean_lu, Z_CLIP)],
        }
        for block in _block_ranges():
            for i, values in enumerate(blocks[block["name"]]):
                out[:, block["start"] + i] = values
        out[~product_known] = 0.0


PRICE_FEATURES = Stage(
    name="price_features",
    section="features",
    outputs=(STATS_FILE, NORMALIZERS_FILE),
    run=build_price_features,
    depends_on=("prices", "product_embeddings"),
)
