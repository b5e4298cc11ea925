"""Stage ``prices``: a regular weekly price series per product-store pair, with base price and promotions.

LGSR has no price column, only SPEND and QUANTITY per line, and a product-store pair is missing from
most weeks (it sold nothing, or the week is missing altogether). Downstream features, the price
response and the simulator need a price for every pair and week, and a regular (non-promoted) price to
measure discounts against. This stage writes ``prices_derived.parquet``: one row per (PROD_CODE,
STORE_CODE, week) for every pair that sold in the training weeks and every week of the index, and
``prices_summary.json`` with counts (outlier lines dropped, rows per price source, promoted shares).

How a price is found (``price_source``), first that exists wins:

1. ``observed``: median of SPEND / QUANTITY over the pair's lines that week, after dropping lines whose
   unit price lies outside [m / 3, 3 m], m being the product's training-weeks median unit price
   (mis-keyed quantities and spends: a pack counted as one unit, a refund-like penny).
2. ``format_region``: median observed price of the product that week over the stores of the same
   STORE_FORMAT and STORE_REGION (chains price by format and region).
3. ``global_week``: median observed price of the product that week over all stores.
4. ``forward_fill``: the pair's price of the latest earlier week that had one from 1-3 (weeks where the
   product sold nowhere: the shelf price most likely did not change).
5. ``product_median``: m, the product's training-weeks median unit price (no earlier evidence).

Then ``base_price`` is the rolling maximum of the price over the current and previous
``base_price_window - 1`` weeks, ``discount_depth = max(0, 1 - price / base_price)``, ``promo_flag`` is
depth > ``promo_threshold`` and ``discount_bin`` buckets the depth (none <= 5% < shallow <= 15% <
medium <= 30% < deep).

No leakage: the outlier bounds, the product medians, the set of pairs and the stores' format and region
are fitted on training weeks only; forward fill and the rolling maximum look only backwards. So the rows
of the training weeks do not change when later weeks are added to (or removed from) the data.

Memory: every step is a DuckDB aggregate, join or window, which spill past the memory limit. Medians are
never DuckDB's ``median()`` (its per-group state holds every value and does not spill): values are
first counted per distinct value, and the median is read from cumulative counts (``weighted_median_sql``).
"""

from __future__ import annotations

import json
import logging

import duckdb

from world_model.pipeline.runner import Stage, StageContext
from world_model.pipeline.weeks import SPLITS

log = logging.getLogger(__name__)

OUTPUT = "prices_derived.parquet"
SUMMARY = "prices_summary.json"

OUTLIER_FACTOR = 3.0
"""A line's unit price outside [median / 3, median * 3] of its product's training median is dropped."""

PRICE_SOURCES = ("observed", "format_region", "global_week", "forward_fill", "product_median")

DISCOUNT_BINS = (("none", 0.05), ("shallow", 0.15), ("medium", 0.30))
"""Upper bounds (inclusive) of the discount-depth bins; deeper discounts are "deep"."""

DEPTH_DECIMALS = 6
"""discount_depth is rounded so that float noise does not cross a bin bound (1 - 0.95/1.00 is
0.050000000000000044, not 0.05)."""


def weighted_median_sql(source: str, keys: str, value: str, weight: str, alias: str) -> str:
    """SQL: per ``keys``, the median of ``value`` repeated ``weight`` times, over the rows of ``source``.

    Equal to DuckDB's ``median`` (the mean of the two middle values when the count is even) but made
    of windows and a GROUP BY, which spill to disk, over rows already reduced to distinct values.
    """
    return f"""
        SELECT {keys}, (max(v) FILTER (WHERE below <= lo_rank AND lo_rank < upto)
                       + max(v) FILTER (WHERE below <= hi_rank AND hi_rank < upto)) / 2 AS {alias}
        FROM (
            SELECT {keys}, v, upto - w AS below, upto, (total - 1) // 2 AS lo_rank, total // 2 AS hi_rank
            FROM (
                SELECT {keys}, {value} AS v, {weight} AS w,
                       sum({weight}) OVER (PARTITION BY {keys} ORDER BY {value} ROWS UNBOUNDED PRECEDING) AS upto,
                       sum({weight}) OVER (PARTITION BY {keys}) AS total
                FROM ({source})
            )
        )
        GROUP BY {keys}"""


def _create_enums(con: duckdb.DuckDBPyConnection) -> None:
    """ENUM types for the text columns of the output: DuckDB writes an ENUM column to parquet as a
    dictionary-encoded string (readers see plain text) about twice as fast as a VARCHAR column, and the
    pair x week rows carry 1-2 byte codes instead of strings through the window and the sort."""
    con.execute("CREATE TYPE prod_code AS ENUM (SELECT PROD_CODE FROM products ORDER BY PROD_CODE)")
    con.execute("CREATE TYPE store_code AS ENUM (SELECT STORE_CODE FROM stores ORDER BY STORE_CODE)")
    for name, values in (
        ("split_name", SPLITS),
        ("discount_bin", (*(name for name, _ in DISCOUNT_BINS), "deep")),
        ("price_source", PRICE_SOURCES),
    ):
        con.execute(f"CREATE TYPE {name} AS ENUM ({', '.join(repr(v) for v in values)})")


def _fit_and_observe(con: duckdb.DuckDBPyConnection) -> None:
    """Temp tables of the fitted statistics (training weeks) and the observed prices (all weeks).

    Products, stores, pairs and format-region groups get integer ids: the joins and the window over the
    pair x week grid run several times faster on integers than on the text codes.

    ``line_prices``    one row per (pair, week, store attributes, unit price): lines and units
    ``products``       products sold in the training weeks, with m (their training median unit price)
    ``stores``         every store with its format and region (its most common in the training weeks)
    ``groups``         (product, format, region) of the pairs
    ``pairs``          product-store pairs that sold in the training weeks, numbered in output order
    ``observed``       median kept unit price per (product, store, week)
    ``cells``          units (every line: outliers are bad prices, not missing sales) and observed price
                       per (pair, week) with a sale
    ``product_weeks``  per (product, week): the latest week <= it with an observed price anywhere (the
                       evidence week; forward fill when earlier) and the global median price then
    ``group_weeks``    per (group, week): the price and source a pair gets when it has no observation at
                       the evidence week (format_region, global_week, forward_fill or product_median)
    """
    con.execute(
        """CREATE TEMP TABLE line_prices AS
           SELECT PROD_CODE, STORE_CODE, week_index, split = 'train' AS is_train, STORE_FORMAT, STORE_REGION,
                  SPEND / QUANTITY AS unit_price, count(*) AS n_lines, sum(QUANTITY)::BIGINT AS units
           FROM transactions GROUP BY ALL"""
    )
    con.execute(
        "CREATE TEMP TABLE products AS SELECT row_number() OVER (ORDER BY PROD_CODE) AS product_id, * FROM ("
        + weighted_median_sql(
            "SELECT * FROM line_prices WHERE is_train", "PROD_CODE", "unit_price", "n_lines", "median_price"
        )
        + ")"
    )
    # A store with training rows takes its most common training format/region; a store seen only later
    # (it can only feed later weeks' format_region medians) its most common overall. Ties: alphabetical.
    con.execute(
        """CREATE TEMP TABLE stores AS
           SELECT row_number() OVER (ORDER BY STORE_CODE) AS store_id, STORE_CODE, STORE_FORMAT, STORE_REGION
           FROM (
               SELECT STORE_CODE, STORE_FORMAT, STORE_REGION, row_number() OVER (
                          PARTITION BY STORE_CODE
                          ORDER BY train_lines DESC, CASE WHEN train_lines = 0 THEN all_lines ELSE 0 END DESC,
                                   STORE_FORMAT NULLS LAST, STORE_REGION NULLS LAST) AS choice
               FROM (SELECT STORE_CODE, STORE_FORMAT, STORE_REGION,
                            coalesce(sum(n_lines) FILTER (WHERE is_train), 0) AS train_lines,
                            sum(n_lines) AS all_lines
                     FROM line_prices GROUP BY ALL))
           WHERE choice = 1"""
    )
    con.execute(
        """CREATE TEMP TABLE lines AS
           SELECT p.product_id, s.store_id, l.week_index, l.is_train, l.unit_price, l.n_lines, l.units,
                  l.unit_price NOT BETWEEN p.median_price / $factor AND p.median_price * $factor AS outlier
           FROM line_prices l JOIN products p USING (PROD_CODE) JOIN stores s USING (STORE_CODE)""",
        {"factor": OUTLIER_FACTOR},
    )
    con.execute(
        """CREATE TEMP TABLE groups AS
           SELECT row_number() OVER (ORDER BY product_id, STORE_FORMAT, STORE_REGION) AS group_id, *
           FROM (SELECT DISTINCT l.product_id, s.STORE_FORMAT, s.STORE_REGION
                 FROM lines l JOIN stores s USING (store_id) WHERE l.is_train)"""
    )
    _create_enums(con)
    con.execute(
        """CREATE TEMP TABLE pairs AS
           SELECT row_number() OVER (ORDER BY p.PROD_CODE, s.STORE_CODE) AS pair_id, k.product_id, k.store_id,
                  g.group_id, p.PROD_CODE::prod_code AS PROD_CODE, s.STORE_CODE::store_code AS STORE_CODE
           FROM (SELECT DISTINCT product_id, store_id FROM lines WHERE is_train) k
           JOIN products p USING (product_id) JOIN stores s USING (store_id)
           JOIN groups g ON g.product_id = k.product_id AND g.STORE_FORMAT IS NOT DISTINCT FROM s.STORE_FORMAT
                        AND g.STORE_REGION IS NOT DISTINCT FROM s.STORE_REGION"""
    )
    con.execute(
        "CREATE TEMP TABLE observed AS "
        + weighted_median_sql(
            "SELECT * FROM lines WHERE NOT outlier", "product_id, store_id, week_index", "unit_price", "n_lines", "price"
        )
    )
    con.execute(
        """CREATE TEMP TABLE cells AS
           SELECT c.pair_id, c.week_index, c.units, o.price
           FROM (SELECT k.pair_id, k.product_id, k.store_id, l.week_index, sum(l.units)::BIGINT AS units
                 FROM lines l JOIN pairs k USING (product_id, store_id) GROUP BY ALL) c
           LEFT JOIN observed o USING (product_id, store_id, week_index)"""
    )
    con.execute(
        "CREATE TEMP TABLE format_region AS "
        + weighted_median_sql(
            "SELECT o.*, s.STORE_FORMAT, s.STORE_REGION, 1 AS one FROM observed o JOIN stores s USING (store_id)",
            "product_id, week_index, STORE_FORMAT, STORE_REGION",
            "price",
            "one",
            "price",
        )
    )
    con.execute(
        """CREATE TEMP TABLE product_weeks AS
           SELECT product_id, week_index,
                  last_value(CASE WHEN g.price IS NOT NULL THEN week_index END IGNORE NULLS) OVER w AS evidence_week,
                  last_value(g.price IGNORE NULLS) OVER w AS evidence_global_price
           FROM products CROSS JOIN week_index_table LEFT JOIN ("""
        + weighted_median_sql("SELECT *, 1 AS one FROM observed", "product_id, week_index", "price", "one", "price")
        + """) g USING (product_id, week_index)
           WINDOW w AS (PARTITION BY product_id ORDER BY week_index ROWS UNBOUNDED PRECEDING)"""
    )
    con.execute(
        """CREATE TEMP TABLE group_weeks AS
           SELECT g.group_id, w.week_index, w.evidence_week,
                  coalesce(fr.price, w.evidence_global_price, p.median_price) AS group_price,
                  CASE WHEN w.evidence_week IS NULL THEN 'product_median'
                       WHEN w.evidence_week < w.week_index THEN 'forward_fill'
                       WHEN fr.price IS NOT NULL THEN 'format_region'
                       ELSE 'global_week' END AS group_source
           FROM groups g JOIN products p USING (product_id) JOIN product_weeks w USING (product_id)
           LEFT JOIN format_region fr
               ON fr.product_id = g.product_id AND fr.week_index = w.evidence_week
               AND fr.STORE_FORMAT IS NOT DISTINCT FROM g.STORE_FORMAT
               AND fr.STORE_REGION IS NOT DISTINCT FROM g.STORE_REGION"""
    )


def _derived_sql(window: int, threshold: float) -> str:
    """SQL of the output rows: the pair x week grid, the price waterfall, base price and discounts.

    A pair's price in week w is its own observed price at the evidence week e <= w (observed when
    e = w, forward fill when earlier), else its group's price for week w.
    """
    bins = " ".join(f"WHEN discount_depth <= {bound} THEN '{name}'" for name, bound in DISCOUNT_BINS)
    return f"""
        WITH priced AS (
            SELECT p.pair_id, p.PROD_CODE, p.STORE_CODE, k.SHOP_WEEK, gw.week_index, k.split,
                   coalesce(here.units, 0)::BIGINT AS units,
                   coalesce(there.price, gw.group_price) AS actual_price,
                   CASE WHEN there.price IS NULL THEN gw.group_source
                        WHEN gw.evidence_week = gw.week_index THEN 'observed'
                        ELSE 'forward_fill' END AS price_source
            FROM pairs p
            JOIN group_weeks gw USING (group_id)
            JOIN week_index_table k USING (week_index)
            LEFT JOIN cells here ON here.pair_id = p.pair_id AND here.week_index = gw.week_index
            LEFT JOIN cells there ON there.pair_id = p.pair_id AND there.week_index = gw.evidence_week
        ),
        discounted AS (
            SELECT *, CASE WHEN base_price > 0
                           THEN round(greatest(0.0, 1 - actual_price / base_price), {DEPTH_DECIMALS})
                           ELSE 0.0 END AS discount_depth
            FROM (SELECT *, max(actual_price) OVER (
                                PARTITION BY pair_id ORDER BY week_index
                                ROWS BETWEEN {window - 1} PRECEDING AND CURRENT ROW) AS base_price
                  FROM priced)
        )
        SELECT PROD_CODE, STORE_CODE, SHOP_WEEK, week_index, split::split_name AS split, actual_price, units,
               base_price, discount_depth, discount_depth > {threshold} AS promo_flag,
               (CASE {bins} ELSE 'deep' END)::discount_bin AS discount_bin, price_source::price_source AS price_source
        FROM discounted
        ORDER BY pair_id, week_index"""


def _summary(con: duckdb.DuckDBPyConnection, ctx: StageContext, rows: int) -> dict:
    """Counts that explain the output: what the outlier filter dropped, where prices came from."""
    out = ctx.out / OUTPUT
    dropped = dict(
        con.execute(
            """SELECT CASE WHEN is_train THEN 'train' ELSE 'later' END, sum(n_lines)::BIGINT
               FROM lines WHERE outlier GROUP BY ALL"""
        ).fetchall()
    )
    sources = dict(con.execute(f"SELECT price_source, count(*) FROM '{out}' GROUP BY ALL").fetchall())
    promoted = con.execute(
        f"""SELECT split, avg(promo_flag::INT) FILTER (WHERE price_source = 'observed'),
                   count(*) FILTER (WHERE price_source = 'observed')
            FROM '{out}' GROUP BY ALL"""
    ).fetchall()
    (pairs, products, stores), = con.execute(
        "SELECT count(*), count(DISTINCT PROD_CODE), count(DISTINCT STORE_CODE) FROM pairs"
    ).fetchall()
    return {
        "rows": rows,
        "pairs": pairs,
        "products": products,
        "stores": stores,
        "weeks": len(ctx.weeks.shop_weeks),
        "outlier_factor": OUTLIER_FACTOR,
        "outlier_lines_dropped": dropped.get("train", 0) + dropped.get("later", 0),
        "outlier_lines_dropped_train": dropped.get("train", 0),
        "price_source_rows": {source: sources.get(source, 0) for source in PRICE_SOURCES},
        "observed_rows_by_split": {split: n for split, _, n in promoted},
        "observed_promo_share_by_split": {split: round(share or 0.0, 6) for split, share, _ in promoted},
        "base_price_window": ctx.config.base_price_window,
        "promo_threshold": ctx.config.promo_threshold,
    }


def build_prices(ctx: StageContext) -> dict[str, int]:
    """Write ``prices_derived.parquet`` and ``prices_summary.json`` into ``ctx.out``; return the row count."""
    if ctx.config.base_price_window < 1:
        raise ValueError(f"base_price_window must be >= 1, got {ctx.config.base_price_window}")
    con = ctx.connect()
    try:
        _fit_and_observe(con)
        out = ctx.out / OUTPUT
        con.execute(
            f"COPY ({_derived_sql(ctx.config.base_price_window, ctx.config.promo_threshold)}) "
            f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
        )
        (rows,), = con.execute(f"SELECT count(*) FROM '{out}'").fetchall()
        summary = _summary(con, ctx, rows)
    finally:
        con.close()
    log.info(
        "prices: %d rows, %d outlier lines dropped (unit price outside [m/%g, %g m] of the product's training median)",
        rows, summary["outlier_lines_dropped"], OUTLIER_FACTOR, OUTLIER_FACTOR,
    )
    (ctx.out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return {OUTPUT: rows}


PRICES = Stage(name="prices", section="processed", outputs=(OUTPUT, SUMMARY), run=build_prices)
