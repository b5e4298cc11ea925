"""The basket index and the training samples: next-basket and store-visit, one file per split.

Everything here is per-sample history, nothing is fitted: a sample's inputs are baskets strictly before
its target in the customer's trip order (SHOP_DATE, SHOP_HOUR, BASKET_ID), so a later basket never feeds
an earlier target (two trips of the same date and hour are ordered by BASKET_ID: LGSR times are hours,
so that is the finest order there is). History may cross splits (a validation target's previous basket can be a training
basket); the split of a sample is the split of its target's week.

- ``baskets.parquet``: one row per basket of a named customer (CUST_CODE not null), sorted by CUST_CODE then
  trip order; ``basket_row`` is the row number (0..B-1) that samples and the tensor cache refer to, and
  ``history_baskets`` the customer's earlier baskets. Because of the sort, the previous basket of row r is
  row r - 1 whenever ``history_baskets > 0``. Ingest guarantees one store, date and customer per
  BASKET_ID (it rebuilds ids that span several), so a basket's attributes are single-valued; should a
  line disagree anyway (hour, basket labels), the smallest value is taken (``min``), deterministically.
- ``{split}_next_basket.parquet``: predict a basket's distinct products from the previous basket. Kept:
  targets with >= ``MIN_PRODUCTS`` distinct products and, unless the customer has no earlier basket
  (cold start, kept with a null input), at most ``MAX_WEEK_GAP`` weeks after the previous basket.
- ``{split}_store_visit.parquet``: predict the store of a basket from the previous one; one sample per
  basket with an earlier basket, no other filter (a one-product trip or a long absence is still a visit).
- ``samples_summary.json``: per split, targets, drops by filter (applied in that order), kept samples and
  cold starts.

Memory stays bounded at tens of millions of lines: DuckDB's joins, GROUP BYs, windows partitioned by
customer and sorts spill to disk, but ``list()`` aggregates do not. The distinct (basket, product) pairs
are one GROUP BY written to a scratch parquet (``n_products`` counts them: ``count(DISTINCT)`` was five
times slower), then keyed by basket_row and written again sorted by it (a spilling sort). The product
lists are built last, per range of ``CHUNK_BASKETS`` target rows, each range reading only its own row groups;
each range's samples are written as a parquet part per split, already in target_basket_row order, and the
parts are concatenated batch by batch. ``basket_row`` itself is the customer's rank (a window partitioned
by customer) plus the number of baskets of customers with smaller codes, so no window spans all baskets.
Scratch files live in the stage's scratch folder and are deleted at the end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from world_model.data.duckdb_util import sql_string
from world_model.pipeline.runner import Stage, StageContext
from world_model.pipeline.weeks import SPLITS

BASKETS = "baskets.parquet"
NEXT_BASKET_FILES = {split: f"{split}_next_basket.parquet" for split in SPLITS}
STORE_VISIT_FILES = {split: f"{split}_store_visit.parquet" for split in SPLITS}
SAMPLES_SUMMARY = "samples_summary.json"

MIN_PRODUCTS = 2
"""A next-basket target needs at least this many distinct products."""
MAX_WEEK_GAP = 12
"""Largest target week_index - previous basket week_index of a next-basket sample (cold starts exempt)."""
CHUNK_BASKETS = 500_000
"""Target rows per product-list chunk: bounds the lists held in memory at once (~10 products a basket)."""

_TRIP_ORDER = "SHOP_DATE, SHOP_HOUR, BASKET_ID"

_BASKETS_SQL = f"""
    WITH per_basket AS (
        SELECT CUST_CODE, BASKET_ID, min(STORE_CODE) AS STORE_CODE, min(SHOP_WEEK) AS SHOP_WEEK,
               min(SHOP_DATE) AS SHOP_DATE, min(SHOP_WEEKDAY) AS SHOP_WEEKDAY, min(SHOP_HOUR) AS SHOP_HOUR,
               min(BASKET_SIZE) AS BASKET_SIZE, min(BASKET_TYPE) AS BASKET_TYPE,
               min(BASKET_DOMINANT_MISSION) AS BASKET_DOMINANT_MISSION,
               min(BASKET_PRICE_SENSITIVITY) AS BASKET_PRICE_SENSITIVITY
        FROM transactions WHERE CUST_CODE IS NOT NULL
        GROUP BY CUST_CODE, BASKET_ID
    ), sizes AS (
        SELECT CUST_CODE, BASKET_ID, count(*) AS n_products FROM {{items}} GROUP BY CUST_CODE, BASKET_ID
    ), ranked AS (
        SELECT *, row_number() OVER (PARTITION BY CUST_CODE ORDER BY {_TRIP_ORDER}) - 1 AS history_baskets
        FROM per_basket
    ), offsets AS (
        SELECT CUST_CODE, coalesce(sum(count(*)) OVER (ORDER BY CUST_CODE
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS first_row
        FROM per_basket GROUP BY CUST_CODE
    )
    SELECT (o.first_row + r.history_baskets)::BIGINT AS basket_row, r.BASKET_ID, r.CUST_CODE, r.STORE_CODE,
           r.SHOP_WEEK, w.week_index, w.split, r.SHOP_DATE, r.SHOP_WEEKDAY AS weekday, r.SHOP_HOUR AS hour,
           r.BASKET_SIZE, r.BASKET_TYPE, r.BASKET_DOMINANT_MISSION, r.BASKET_PRICE_SENSITIVITY, s.n_products,
           r.history_baskets
    FROM ranked r JOIN offsets o USING (CUST_CODE) JOIN sizes s USING (CUST_CODE, BASKET_ID)
         JOIN week_index_table w USING (SHOP_WEEK)
    ORDER BY basket_row
"""


def _pairs_sql(baskets: str, where: str = "TRUE", previous_where: str = "TRUE") -> str:
    """Each basket ``t`` with its previous basket ``p`` (null for the customer's first)."""
    return f"""
        (SELECT * FROM {baskets} WHERE {where}) t
        LEFT JOIN (SELECT basket_row, BASKET_ID, STORE_CODE, week_index FROM {baskets} WHERE {previous_where}) p
          ON t.history_baskets > 0 AND p.basket_row = t.basket_row - 1"""


def _write_store_visits(con: duckdb.DuckDBPyConnection, baskets: str, out: Path) -> None:
    for split, name in STORE_VISIT_FILES.items():
        con.execute(
            f"""COPY (
                  SELECT t.CUST_CODE AS customer_id, p.BASKET_ID AS previous_basket_id,
                         p.basket_row AS previous_basket_row, p.STORE_CODE AS previous_store,
                         t.BASKET_ID AS target_basket_id, t.basket_row AS target_basket_row,
                         t.SHOP_WEEK AS target_week, t.week_index AS target_week_index,
                         t.weekday AS target_weekday, t.hour AS target_hour, t.STORE_CODE AS target_store,
                         t.history_baskets AS num_history_baskets, t.week_index - p.week_index AS week_gap, t.split
                  FROM {_pairs_sql(baskets, f"split = '{split}' AND history_baskets > 0")}
                  ORDER BY target_basket_row
                ) TO {sql_string(out / name)} (FORMAT parquet)"""
        )


def _write_next_baskets(con: duckdb.DuckDBPyConnection, baskets: str, distinct_items: str, total: int, work: Path,
                        out: Path, progress: bool) -> None:
    """Next-basket samples with their product lists, built per range of target rows (see the docstring)."""
    items = work / "items.parquet"
    con.execute(
        f"""COPY (
              SELECT b.basket_row, i.PROD_CODE
              FROM {distinct_items} i
              JOIN (SELECT basket_row, CUST_CODE, BASKET_ID FROM {baskets} WHERE n_products >= {MIN_PRODUCTS}) b
                USING (CUST_CODE, BASKET_ID)
              ORDER BY b.basket_row, i.PROD_CODE
            ) TO {sql_string(items)} (FORMAT parquet)"""
    )
    parts: dict[str, list[Path]] = {split: [] for split in SPLITS}
    starts = range(0, max(total, 1), CHUNK_BASKETS)
    for n, start in enumerate(tqdm(starts, desc="samples", unit="chunk", disable=not progress or None)):
        end = start + CHUNK_BASKETS
        targets = f"basket_row >= {start} AND basket_row < {end} AND n_products >= {MIN_PRODUCTS}"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE chunk AS
                WITH lists AS (
                    SELECT basket_row, list_sort(list(PROD_CODE)) AS products
                    FROM read_parquet({sql_string(items)})
                    WHERE basket_row >= {start} AND basket_row < {end} GROUP BY basket_row
                )
                SELECT t.CUST_CODE AS customer_id, p.BASKET_ID AS input_basket_id, t.BASKET_ID AS target_basket_id,
                       p.basket_row AS input_basket_row, t.basket_row AS target_basket_row, t.SHOP_WEEK AS week,
                       t.week_index, t.STORE_CODE AS store, l.products, t.n_products, t.weekday, t.hour,
                       t.history_baskets AS num_history_baskets, t.week_index - p.week_index AS week_gap, t.split
                FROM {_pairs_sql(baskets, targets, f"basket_row >= {start - 1} AND basket_row < {end - 1}")}
                JOIN lists l ON l.basket_row = t.basket_row
                WHERE t.history_baskets = 0 OR t.week_index - p.week_index <= {MAX_WEEK_GAP}
                ORDER BY target_basket_row"""
        )
        for split in SPLITS:
            part = work / f"{split}-{n:06d}.parquet"
            con.execute(
                f"""COPY (SELECT * FROM chunk WHERE split = '{split}' ORDER BY target_basket_row)
                    TO {sql_string(part)} (FORMAT parquet)"""
            )
            parts[split].append(part)
    for split, name in NEXT_BASKET_FILES.items():
        _concatenate(parts[split], out / name)


def _concatenate(parts: list[Path], target: Path) -> None:
    """Append parquet parts in order into one file, a batch at a time. DuckDB marks a column required
    when a part happens to hold no null, so every part is cast to the all-nullable schema."""
    schema = pa.schema([field.with_nullable(True) for field in pq.read_schema(parts[0])])
    with pq.ParquetWriter(target, schema) as writer:
        for part in parts:
            for batch in pq.ParquetFile(part).iter_batches():
                writer.write_batch(batch.cast(schema))


def _summary(con: duckdb.DuckDBPyConnection, baskets: str) -> dict:
    rows = con.execute(
        f"""SELECT t.split, count(*),
                   count(*) FILTER (t.history_baskets = 0),
                   count(*) FILTER (t.n_products < {MIN_PRODUCTS}),
                   count(*) FILTER (t.n_products >= {MIN_PRODUCTS} AND t.week_index - p.week_index > {MAX_WEEK_GAP}),
                   count(*) FILTER (t.n_products >= {MIN_PRODUCTS}
                                    AND (t.history_baskets = 0 OR t.week_index - p.week_index <= {MAX_WEEK_GAP})),
                   count(*) FILTER (t.n_products >= {MIN_PRODUCTS} AND t.history_baskets = 0),
                   count(*) FILTER (t.history_baskets > 0)
            FROM {_pairs_sql(baskets)} GROUP BY t.split"""
    ).fetchall()
    keys = ("targets", "cold_start_targets", "dropped_min_products", "dropped_week_gap", "next_basket",
            "next_basket_cold_start", "store_visit")
    by_split = {split: dict.fromkeys(keys, 0) for split in SPLITS}
    for split, *counts in rows:
        by_split[split] = dict(zip(keys, counts))
    customers = con.execute(f"SELECT count(DISTINCT CUST_CODE) FROM {baskets}").fetchone()[0]
    return {
        "baskets": sum(s["targets"] for s in by_split.values()),
        "customers": customers,
        "min_products": MIN_PRODUCTS,
        "max_week_gap": MAX_WEEK_GAP,
        "filter_order": ["min_products", "week_gap"],
        "splits": by_split,
    }


def build_samples(ctx: StageContext) -> dict[str, int]:
    """Write baskets.parquet, the next-basket and store-visit samples per split and their summary."""
    con = ctx.connect()
    work = ctx.out / "_work"
    work.mkdir()
    distinct_items = f"read_parquet({sql_string(work / 'distinct_items.parquet')})"
    con.execute(
        f"""COPY (SELECT DISTINCT CUST_CODE, BASKET_ID, PROD_CODE FROM transactions WHERE CUST_CODE IS NOT NULL)
            TO {sql_string(work / 'distinct_items.parquet')} (FORMAT parquet)"""
    )
    basket_sql = _BASKETS_SQL.format(items=distinct_items)
    con.execute(f"COPY ({basket_sql}) TO {sql_string(ctx.out / BASKETS)} (FORMAT parquet)")
    baskets = f"read_parquet({sql_string(ctx.out / BASKETS)})"
    total = con.execute(f"SELECT count(*) FROM {baskets}").fetchone()[0]
    _write_store_visits(con, baskets, ctx.out)
    _write_next_baskets(con, baskets, distinct_items, total, work, ctx.out, ctx.config.progress)
    summary = _summary(con, baskets)
    con.close()
    shutil.rmtree(work)
    (ctx.out / SAMPLES_SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    rows = {BASKETS: total, SAMPLES_SUMMARY: 1}
    for split in SPLITS:
        for name, key in ((NEXT_BASKET_FILES[split], "next_basket"), (STORE_VISIT_FILES[split], "store_visit")):
            rows[name] = pq.read_metadata(ctx.out / name).num_rows
            if rows[name] != summary["splits"][split][key]:
                raise RuntimeError(f"{name}: {rows[name]} rows, the summary counts {summary['splits'][split][key]}")
    return rows


SAMPLES = Stage(
    name="samples",
    section="prepared",
    outputs=(BASKETS, *NEXT_BASKET_FILES.values(), *STORE_VISIT_FILES.values(), SAMPLES_SUMMARY),
    run=build_samples,
)
