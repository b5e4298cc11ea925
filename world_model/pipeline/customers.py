"""Per-customer behaviour fitted on the training weeks: where they shop and what kind of trips they make.

Only named customers (CUST_CODE not null) and training baskets count. A basket is one trip; trips are
ordered by (SHOP_DATE, SHOP_HOUR, BASKET_ID).

- ``customer_store_affinity.parquet`` (one row per customer): primary store (most trips; ties to the
  lower code), loyalty (its share of trips), stores visited, switching frequency (share of trips after
  the first made at another store than the trip before), trips, first and last week index.
- ``customer_store_visits.parquet`` (one row per customer and store): the visit distribution, trips
  and share, ranked. A long table rather than a list column: DuckDB's list aggregates do not spill.
- ``customer_mission_patterns.parquet`` (one row per customer): the share of their trips of each value
  of BASKET_TYPE, BASKET_DOMINANT_MISSION, BASKET_PRICE_SENSITIVITY and BASKET_SIZE, as columns
  ``<attribute>__<value>`` over the values seen in training (each attribute's shares sum to 1).
"""

from __future__ import annotations

import re

from world_model.data.duckdb_util import sql_string
from world_model.pipeline.runner import Stage, StageContext

AFFINITY = "customer_store_affinity.parquet"
VISITS = "customer_store_visits.parquet"
MISSIONS = "customer_mission_patterns.parquet"
MISSION_ATTRIBUTES = {
    "BASKET_TYPE": "basket_type",
    "BASKET_DOMINANT_MISSION": "mission",
    "BASKET_PRICE_SENSITIVITY": "price_sensitivity",
    "BASKET_SIZE": "basket_size",
}

_TRIPS_SQL = """
    CREATE TEMP TABLE trips AS
    SELECT CUST_CODE, BASKET_ID, min(STORE_CODE) AS STORE_CODE, min(SHOP_DATE) AS SHOP_DATE,
           min(SHOP_HOUR) AS SHOP_HOUR, min(week_index) AS week_index,
           min(BASKET_TYPE) AS BASKET_TYPE, min(BASKET_DOMINANT_MISSION) AS BASKET_DOMINANT_MISSION,
           min(BASKET_PRICE_SENSITIVITY) AS BASKET_PRICE_SENSITIVITY, min(BASKET_SIZE) AS BASKET_SIZE
    FROM train_transactions WHERE CUST_CODE IS NOT NULL
    GROUP BY CUST_CODE, BASKET_ID
"""
"""One row per trip. A basket's lines agree on these columns in clean data; where they do not (corrupt
rows), each takes its smallest value, as the samples' and the entity features' trips do, so the result
does not depend on the order DuckDB's threads read the lines in (``any_value`` did)."""


def build_store_affinity(ctx: StageContext) -> dict[str, int]:
    con = ctx.connect()
    con.execute(_TRIPS_SQL)
    con.execute(
        """CREATE TEMP TABLE visits AS
           SELECT CUST_CODE, STORE_CODE, count(*) AS trips,
                  count(*) / sum(count(*)) OVER (PARTITION BY CUST_CODE) AS share,
                  row_number() OVER (PARTITION BY CUST_CODE ORDER BY count(*) DESC, STORE_CODE) AS rank
           FROM trips GROUP BY CUST_CODE, STORE_CODE"""
    )
    con.execute(f"COPY (SELECT * FROM visits ORDER BY CUST_CODE, rank) TO {sql_string(ctx.out / VISITS)} (FORMAT parquet)")
    con.execute(
        f"""COPY (
              WITH ordered AS (
                  SELECT CUST_CODE, STORE_CODE, week_index,
                         lag(STORE_CODE) OVER (PARTITION BY CUST_CODE ORDER BY SHOP_DATE, SHOP_HOUR, BASKET_ID) AS previous
                  FROM trips
              ), per_customer AS (
                  SELECT CUST_CODE, count(*) AS trips,
                         count(*) FILTER (previous IS NOT NULL AND previous <> STORE_CODE)
                           / greatest(count(*) - 1, 1)::DOUBLE AS switching_frequency,
                         min(week_index) AS first_week_index, max(week_index) AS last_week_index
                  FROM ordered GROUP BY CUST_CODE
              ), stores AS (
                  SELECT CUST_CODE, count(*) AS stores_visited,
                         any_value(STORE_CODE) FILTER (rank = 1) AS primary_store,
                         any_value(share) FILTER (rank = 1) AS loyalty
                  FROM visits GROUP BY CUST_CODE
              )
              SELECT CUST_CODE, primary_store, loyalty, stores_visited, switching_frequency, trips,
                     first_week_index, last_week_index
              FROM per_customer JOIN stores USING (CUST_CODE) ORDER BY CUST_CODE
            ) TO {sql_string(ctx.out / AFFINITY)} (FORMAT parquet)"""
    )
    rows = {name: _count(con, ctx, name) for name in (AFFINITY, VISITS)}
    con.close()
    return rows


def build_mission_patterns(ctx: StageContext) -> dict[str, int]:
    con = ctx.connect()
    con.execute(_TRIPS_SQL)
    shares = []
    for column, prefix in MISSION_ATTRIBUTES.items():
        query = f"SELECT DISTINCT {column} FROM trips WHERE {column} IS NOT NULL ORDER BY 1"
        for (value,) in con.execute(query).fetchall():
            literal = value.replace("'", "''")
            shares.append(
                f"count(*) FILTER ({column} = '{literal}') / greatest(count({column}), 1)::DOUBLE"
                f" AS \"{prefix}__{column_slug(value)}\""
            )
    con.execute(
        f"""COPY (SELECT CUST_CODE, count(*) AS trips, {", ".join(shares)}
                  FROM trips GROUP BY CUST_CODE ORDER BY CUST_CODE)
            TO {sql_string(ctx.out / MISSIONS)} (FORMAT parquet)"""
    )
    rows = {MISSIONS: _count(con, ctx, MISSIONS)}
    con.close()
    return rows


def column_slug(value: str) -> str:
    """'Top Up' -> 'top_up': column names without spaces or symbols."""
    return re.sub(r"[^0-9a-z]+", "_", value.lower()).strip("_") or "blank"


def _count(con, ctx: StageContext, name: str) -> int:
    return con.execute(f"SELECT count(*) FROM read_parquet({sql_string(ctx.out / name)})").fetchone()[0]


STORE_AFFINITY = Stage(name="store_affinity", section="processed", outputs=(AFFINITY, VISITS), run=build_store_affinity)
MISSION_PATTERNS = Stage(name="mission_patterns", section="processed", outputs=(MISSIONS,), run=build_mission_patterns)
