"""Fixed-width feature vectors for stores (96) and named customers (160), fitted on the training weeks.

The world model embeds every store and shopper from these matrices, so their width must not depend on
the data: vocabularies (formats, regions, segments, divisions, basket attributes) are read from the
training weeks in code order and placed in fixed slot budgets, unused slots stay zero, and a vocabulary
larger than its budget is an error rather than a silent change of layout. Continuous features are
standardized with the mean and standard deviation of the training entities (recorded in the names file,
so a value can be turned back into its raw unit); shares and ratios already in [0, 1] stay raw in the
customer matrix, where their sums to one carry meaning.

Only entities seen in training get a row: the index parquet maps each code (sorted) to its row. A store
or customer first seen after training maps to an UNK row that the stages building model inputs add; it
is not a row here, because nothing about it may be fitted.

Aggregation runs in DuckDB over the training rows (spilling past the memory limit); only the per-entity
result comes into numpy.

- ``store_features.npy`` [stores, 96] float32: format one-hot 16 | region one-hot 32 | operational 32
  (standardized) | identity 16 (hashed random projection of STORE_CODE).
- ``customer_features.npy`` [customers, 160] float32: static 64 (cold-start block, segment one-hots)
  | history 96 (visit rhythm, basket size and spend, time profiles, missions, store affinity, division
  mix, price tier, repeat rate).
- ``*_index.parquet``: (code, row); ``*_feature_names.json``: blocks, one entry per column, normalizers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from world_model.data.duckdb_util import fetch_arrow
from world_model.errors import RetailSimError
from world_model.pipeline.customers import AFFINITY, MISSIONS, VISITS
from world_model.pipeline.runner import Stage, StageContext

STORE_MATRIX, STORE_INDEX, STORE_NAMES = "store_features.npy", "store_index.parquet", "store_feature_names.json"
CUSTOMER_MATRIX, CUSTOMER_INDEX, CUSTOMER_NAMES = (
    "customer_features.npy",
    "customer_index.parquet",
    "customer_feature_names.json",
)

STORE_DIM, CUSTOMER_DIM = 96, 160
FORMAT_SLOTS, REGION_SLOTS, STORE_OPERATIONAL_SLOTS, IDENTITY_SLOTS = 16, 32, 32, 16
CUSTOMER_STATIC_SLOTS, CUSTOMER_HISTORY_SLOTS = 64, 96
COLD_START_TRIPS = 20
"""Trips at which a customer's own history fully replaces the segment prior (the design's blend weight)."""

BASKET_ATTRIBUTE_SLOTS = {
    "BASKET_SIZE": 3,
    "BASKET_TYPE": 4,
    "BASKET_DOMINANT_MISSION": 5,
    "BASKET_PRICE_SENSITIVITY": 4,
}
"""Store share slots per basket attribute: the LGSR code books (S/M/L; Full Shop/Small Shop/Top Up/XX;
Fresh/Grocery/Mixed/Nonfood/XX; LA/MM/UM/XX) fit exactly, so the operational block is 32 wide."""
SEGMENT_COLUMNS = ("seg_1", "seg_2", "CUST_PRICE_SENSITIVITY", "CUST_LIFESTAGE")
MISSION_SLOTS = 20
"""Customer mission-pattern shares: 16 in LGSR (4 basket types, 5 missions, 4 price sensitivities, 3 sizes)."""
DIVISION_SLOTS = 16
"""Customer spend shares per division (PROD_CODE_40): 9 in LGSR."""
DAY_PARTS = (
    ("morning_before_12", 0, 12),
    ("midday_12_14", 12, 15),
    ("afternoon_15_17", 15, 18),
    ("evening_from_18", 18, 24),
)
"""Customer day parts as [start hour, end hour): LGSR shopping hours run 8-21, so each part holds 3-4 hours."""
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""SHOP_WEEKDAY 1..7 in the LGSR convention (1 = Sunday)."""
UNIT_PRICE_DECIMALS = 6
"""Unit prices are rounded before the class-median comparison: products priced alike must not change tier
with the last bit of a parallel sum."""


@dataclass
class _Matrix:
    """A feature matrix assembled block by block, with a name and a scaling for every column.

    ``scaling`` says how to read a column: "one-hot", "share" (raw, in [0, 1]), "raw", "standardized"
    (z-score over the training entities; its mean and std are in ``normalizers``), "hash" or "padding".
    """

    rows: int
    blocks: list[dict] = field(default_factory=list)
    columns: list[dict] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    normalizers: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, block: str, name: str, values: np.ndarray, scaling: str) -> None:
        """Append one column; "standardized" ones are z-scored here (missing values -> the mean, i.e. 0)."""
        column = np.asarray(values, dtype=np.float64)
        if scaling == "standardized":
            mean = float(np.nanmean(column)) if np.isfinite(column).any() else 0.0
            column = np.where(np.isfinite(column), column, mean)
            std = float(column.std())
            column = (column - mean) / (std if std > 1e-12 else 1.0)
            self.normalizers[name] = {"mean": mean, "std": std}
        else:
            column = np.nan_to_num(column, nan=0.0, posinf=0.0, neginf=0.0)
        self.columns.append({"name": name, "block": block, "scaling": scaling})
        self.values.append(column)

    def open_block(self, name: str, width: int, description: str) -> None:
        start = len(self.columns)
        self.blocks.append({"name": name, "start": start, "stop": start + width, "description": description})

    def close_block(self) -> None:
        """Zero-pad the current block to its width; an overfull block is a bug in this module."""
        block = self.blocks[-1]
        used = len(self.columns) - block["start"]
        width = block["stop"] - block["start"]
        if used > width:
            raise AssertionError(f"block {block['name']} holds {used} columns, more than its {width}")
        block["used"] = used
        for i in range(width - used):
            self.add(block["name"], f"{block['name']}__pad_{i}", np.zeros(self.rows), "padding")

    def one_hot(self, block: str, prefix: str, codes: pd.Series, vocabulary: list[str], unknown: bool) -> None:
        """One column per vocabulary value (plus an "unknown" slot for missing or unseen values)."""
        for value in vocabulary:
            self.add(block, f"{prefix}={value}", (codes == value).to_numpy(), "one-hot")
        if unknown:
            self.add(block, f"{prefix}=unknown", (~codes.isin(vocabulary)).to_numpy(), "one-hot")

    def write(self, out: Path, matrix_name: str, names_name: str, entity: str, unknown_note: str) -> np.ndarray:
        matrix = np.stack(self.values, axis=1).astype(np.float32)
        np.save(out / matrix_name, matrix)
        names = {
            "entity": entity,
            "shape": list(matrix.shape),
            "dtype": "float32",
            "unknown": unknown_note,
            "blocks": self.blocks,
            "columns": self.columns,
            "normalizers": self.normalizers,
        }
        (out / names_name).write_text(json.dumps(names, indent=2) + "\n")
        return matrix


def training_vocabulary(con, column: str, source: str, slots: int, what: str) -> list[str]:
    """Distinct non-null training values of ``column`` in code order; more than ``slots`` is an error."""
    query = f"SELECT DISTINCT {column} FROM {source} WHERE {column} IS NOT NULL ORDER BY 1"
    values = [v for (v,) in con.execute(query).fetchall()]
    if len(values) > slots:
        raise RetailSimError(
            f"{column}: {len(values)} distinct values in the training weeks, but the {what} has room for {slots} "
            f"(the feature width is fixed); map rare values together before ingest"
        )
    return values


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _share_sql(column: str, values: list[str], alias: str) -> list[str]:
    """SQL of each value's share among the rows where ``column`` is not null (0 when none is)."""
    return [
        f"count(*) FILTER ({column} = {_literal(v)}) / greatest(count({column}), 1)::DOUBLE AS \"{alias}{i}\""
        for i, v in enumerate(values)
    ]


def _last_train_week(ctx: StageContext) -> int:
    """Week index of the end of training (the last week when the data stops earlier)."""
    return min(ctx.config.train_end, len(ctx.weeks.shop_weeks))


def store_identity(code: str, dim: int = IDENTITY_SLOTS) -> np.ndarray:
    """A unit vector drawn from a normal seeded by SHA-256 of the code: stable across runs and machines
    (Python's ``hash`` is salted per process), so stores with identical statistics stay distinguishable."""
    seed = int.from_bytes(hashlib.sha256(code.encode("utf-8")).digest()[:4], "little")
    vector = np.random.RandomState(seed).standard_normal(dim)
    return vector / np.linalg.norm(vector)


def _write_index(out: Path, name: str, column: str, codes: list[str]) -> None:
    table = pa.table({column: pa.array(codes, pa.string()), "row": pa.array(range(len(codes)), pa.int32())})
    pq.write_table(table, out / name)


def build_store_features(ctx: StageContext) -> dict[str, int]:
    """Store matrix [stores, 96]: two basket-level aggregates in DuckDB (per basket, then per store), then
    the blocks in numpy. Traffic is per training week *with data*, so a gap in the data is not a quiet week."""
    con = ctx.connect()
    last_week = _last_train_week(ctx)
    data_weeks = con.execute("SELECT count(DISTINCT week_index) FROM train_transactions").fetchone()[0]
    formats = training_vocabulary(con, "STORE_FORMAT", "train_transactions", FORMAT_SLOTS, "store format block")
    regions = training_vocabulary(con, "STORE_REGION", "train_transactions", REGION_SLOTS, "store region block")
    attributes = {
        c: training_vocabulary(con, c, "train_transactions", n, f"{c} share block") for c, n in BASKET_ATTRIBUTE_SLOTS.items()
    }
    con.execute(
        """CREATE TEMP TABLE store_baskets AS
           SELECT STORE_CODE, BASKET_ID, min(CUST_CODE) AS CUST_CODE, count(*) AS lines, sum(SPEND) AS spend,
                  min(SHOP_HOUR) AS hour, min(SHOP_WEEKDAY) AS weekday, min(week_index) AS week_index,
                  min(BASKET_SIZE) AS BASKET_SIZE, min(BASKET_TYPE) AS BASKET_TYPE,
                  min(BASKET_DOMINANT_MISSION) AS BASKET_DOMINANT_MISSION,
                  min(BASKET_PRICE_SENSITIVITY) AS BASKET_PRICE_SENSITIVITY
           FROM train_transactions GROUP BY STORE_CODE, BASKET_ID"""
    )
    shares = [s for column, values in attributes.items() for s in _share_sql(column, values, f"{column}__")]
    baskets = fetch_arrow(
        con,
        f"""SELECT STORE_CODE, count(*) AS baskets, count(DISTINCT CUST_CODE) AS customers,
                   count(DISTINCT week_index) AS active_weeks, avg((CUST_CODE IS NULL)::DOUBLE) AS anonymous_share,
                   avg(lines) AS mean_items, median(lines) AS median_items, avg(spend) AS mean_spend,
                   avg(hour) AS mean_hour, stddev_pop(hour) AS hour_std,
                   avg((hour < 12)::DOUBLE) AS before_noon, avg((hour >= 17)::DOUBLE) AS from_17h,
                   avg((weekday IN (1, 7))::DOUBLE) AS weekend,
                   count(*) FILTER (week_index > {last_week // 2}) AS late_baskets,
                   count(*) FILTER (week_index <= {last_week // 2}) AS early_baskets,
                   {", ".join(shares)}
            FROM store_baskets GROUP BY STORE_CODE""",
    ).to_pandas()
    lines = fetch_arrow(
        con,
        """WITH reference AS (
                SELECT PROD_CODE, median(SPEND / QUANTITY) AS unit_price FROM train_transactions GROUP BY PROD_CODE)
            SELECT STORE_CODE, min(STORE_FORMAT) AS STORE_FORMAT, min(STORE_REGION) AS STORE_REGION,
                   avg(QUANTITY) AS mean_quantity, count(DISTINCT PROD_CODE) AS products,
                   sum(SPEND) / greatest(sum(QUANTITY * unit_price), 1e-9) AS price_index
            FROM train_transactions JOIN reference USING (PROD_CODE) GROUP BY STORE_CODE""",
    ).to_pandas()
    con.close()
    stores = lines.merge(baskets, on="STORE_CODE").sort_values("STORE_CODE", kind="stable").reset_index(drop=True)
    codes = stores["STORE_CODE"].tolist()

    m = _Matrix(rows=len(stores))
    m.open_block("format", FORMAT_SLOTS, "one-hot of STORE_FORMAT over the training formats (code order), zero-padded; "
                 "more than 16 formats is an error")
    m.one_hot("format", "STORE_FORMAT", stores["STORE_FORMAT"], formats, unknown=False)
    m.close_block()
    m.open_block("region", REGION_SLOTS, "one-hot of STORE_REGION over the training regions (code order), zero-padded")
    m.one_hot("region", "STORE_REGION", stores["STORE_REGION"], regions, unknown=False)
    m.close_block()
    m.open_block("operational", STORE_OPERATIONAL_SLOTS, "training-week statistics of the store's baskets, each "
                 "standardized over the training stores (normalizers hold the raw mean and std)")
    operational = {
        "log_baskets_per_week": np.log1p(stores["baskets"] / max(data_weeks, 1)),
        "log_customers": np.log1p(stores["customers"]),
        "active_week_share": stores["active_weeks"] / max(data_weeks, 1),
        "anonymous_basket_share": stores["anonymous_share"],
        "mean_items_per_basket": stores["mean_items"],
        "median_items_per_basket": stores["median_items"],
        "mean_spend_per_basket": stores["mean_spend"],
        "mean_quantity_per_line": stores["mean_quantity"],
    }
    for column, values in attributes.items():
        for i in range(BASKET_ATTRIBUTE_SLOTS[column]):
            if i < len(values):
                operational[f"share_{column}={values[i]}"] = stores[f"{column}__{i}"]
            else:
                operational[f"share_{column}=unused_{i}"] = np.zeros(len(stores))
    operational |= {
        "mean_hour": stores["mean_hour"],
        "hour_std": stores["hour_std"],
        "share_before_12h": stores["before_noon"],
        "share_from_17h": stores["from_17h"],
        "share_weekend": stores["weekend"],
        "log_traffic_trend": np.log((stores["late_baskets"] + 1) / (stores["early_baskets"] + 1)),
        "log_distinct_products": np.log1p(stores["products"]),
        "price_index": stores["price_index"],
    }
    for name, values in operational.items():
        m.add("operational", name, values, "standardized")
    m.close_block()
    m.open_block("identity", IDENTITY_SLOTS, "hashed random projection of STORE_CODE: normal draws seeded by SHA-256 "
                 "of the code, L2-normalized")
    identity = np.stack([store_identity(c) for c in codes]) if codes else np.zeros((0, IDENTITY_SLOTS))
    for i in range(IDENTITY_SLOTS):
        m.add("identity", f"identity_{i}", identity[:, i], "hash")
    m.close_block()
    matrix = m.write(ctx.out, STORE_MATRIX, STORE_NAMES, "STORE_CODE",
                     "rows are the stores of the training weeks; a store first seen later maps to an UNK row "
                     "added downstream")
    _write_index(ctx.out, STORE_INDEX, "STORE_CODE", codes)
    return {STORE_MATRIX: matrix.shape[0], STORE_INDEX: len(codes), STORE_NAMES: matrix.shape[1]}


def build_customer_features(ctx: StageContext) -> dict[str, int]:
    """Customer matrix [named customers, 160]: trip- and line-level aggregates in DuckDB joined with the
    ``processed/`` affinity and mission tables, whose definitions of a trip and its order this reuses."""
    con = ctx.connect()
    last_week = _last_train_week(ctx)
    named = "(SELECT * FROM train_transactions WHERE CUST_CODE IS NOT NULL)"
    segment_columns = [
        c for c in SEGMENT_COLUMNS
        if con.execute(f"SELECT count({c}) FROM train_transactions WHERE CUST_CODE IS NOT NULL").fetchone()[0] > 0
    ]
    segments = {c: training_vocabulary(con, c, named, CUSTOMER_STATIC_SLOTS, "customer static block") for c in segment_columns}
    static_width = 2 + sum(len(v) + 1 for v in segments.values())
    if static_width > CUSTOMER_STATIC_SLOTS:
        raise RetailSimError(
            f"segment columns {', '.join(segments)}: {static_width - 2} one-hot slots with unknowns, the customer "
            f"static block has room for {CUSTOMER_STATIC_SLOTS - 2}"
        )
    divisions = training_vocabulary(con, "PROD_CODE_40", "train_transactions", DIVISION_SLOTS, "customer division block")
    weeks_sql = "SELECT DISTINCT week_index FROM train_transactions ORDER BY 1"
    data_weeks = np.array([w for (w,) in con.execute(weeks_sql).fetchall()])
    con.execute(
        """CREATE TEMP TABLE trips AS
           SELECT CUST_CODE, BASKET_ID, min(SHOP_DATE) AS shop_date, min(SHOP_HOUR) AS hour,
                  min(SHOP_WEEKDAY) AS weekday, min(week_index) AS week_index,
                  count(*) AS lines, sum(SPEND) AS spend
           FROM train_transactions WHERE CUST_CODE IS NOT NULL GROUP BY CUST_CODE, BASKET_ID"""
    )
    con.execute(
        """CREATE TEMP TABLE ordered_trips AS
           SELECT *, row_number() OVER w AS trip_no, shop_date - lag(shop_date) OVER w AS gap_days
           FROM trips WINDOW w AS (PARTITION BY CUST_CODE ORDER BY shop_date, hour, BASKET_ID)"""
    )
    weekday_sql = [f"avg((weekday = {i + 1})::DOUBLE) AS wd{i}" for i in range(7)]
    day_part_sql = [f"avg((hour >= {lo} AND hour < {hi})::DOUBLE) AS dp{i}" for i, (_, lo, hi) in enumerate(DAY_PARTS)]
    segment_sql = "".join(f", min({c}) AS \"{c}\"" for c in segment_columns)
    per_trip = fetch_arrow(
        con,
        f"""SELECT CUST_CODE, count(DISTINCT week_index) AS active_weeks,
                   avg(lines) AS mean_items, avg(spend) AS mean_spend,
                   coalesce(stddev_pop(spend) / nullif(avg(spend), 0), 0) AS spend_cv,
                   avg(hour) AS mean_hour, stddev_pop(hour) AS hour_std,
                   avg(gap_days) AS mean_gap_days, stddev_pop(gap_days) / nullif(avg(gap_days), 0) AS gap_cv,
                   count(*) FILTER (week_index > {last_week - 4}) AS trips_last_4,
                   count(*) FILTER (week_index > {last_week - 13}) AS trips_last_13,
                   {", ".join(weekday_sql + day_part_sql)}
            FROM ordered_trips GROUP BY CUST_CODE""",
    ).to_pandas()
    division_sql = [
        f"coalesce(sum(SPEND) FILTER (PROD_CODE_40 = {_literal(d)}) / nullif(sum(SPEND), 0), 0) AS div{i}"
        for i, d in enumerate(divisions)
    ]
    per_line = fetch_arrow(
        con,
        f"""WITH product_price AS (
                SELECT PROD_CODE, min(PROD_CODE_10) AS class,
                       round(sum(SPEND) / sum(QUANTITY), {UNIT_PRICE_DECIMALS}) AS unit_price
                FROM train_transactions GROUP BY PROD_CODE
            ), tier AS (
                SELECT PROD_CODE, sign(unit_price - median(unit_price) OVER (PARTITION BY class)) AS tier
                FROM product_price
            ), lines AS (
                SELECT t.CUST_CODE, t.PROD_CODE, t.PROD_CODE_10, t.PROD_CODE_40, t.SPEND, t.QUANTITY, o.trip_no
                FROM train_transactions t JOIN ordered_trips o USING (CUST_CODE, BASKET_ID)
            ), first_purchase AS (
                SELECT CUST_CODE, PROD_CODE, min(trip_no) AS first_trip FROM lines GROUP BY CUST_CODE, PROD_CODE
            )
            SELECT CUST_CODE, avg(QUANTITY) AS mean_quantity, avg(SPEND) AS mean_line_spend,
                   count(DISTINCT PROD_CODE) AS products, count(DISTINCT PROD_CODE_10) AS classes,
                   avg((trip_no > first_trip)::DOUBLE) AS repeat_rate,
                   coalesce(sum(SPEND) FILTER (tier > 0) / nullif(sum(SPEND), 0), 0) AS premium_share,
                   coalesce(sum(SPEND) FILTER (tier < 0) / nullif(sum(SPEND), 0), 0) AS value_share
                   {"".join(", " + s for s in division_sql)}
            FROM lines JOIN first_purchase USING (CUST_CODE, PROD_CODE) JOIN tier USING (PROD_CODE)
            GROUP BY CUST_CODE""",
    ).to_pandas()
    static = fetch_arrow(
        con, f"SELECT CUST_CODE{segment_sql} FROM train_transactions WHERE CUST_CODE IS NOT NULL GROUP BY CUST_CODE"
    ).to_pandas()
    con.close()

    affinity = pq.read_table(ctx.artifact("processed", AFFINITY)).to_pandas()
    visits = pq.read_table(ctx.artifact("processed", VISITS)).to_pandas()
    missions = pq.read_table(ctx.artifact("processed", MISSIONS)).to_pandas()
    mission_columns = [c for c in missions.columns if "__" in c]
    if len(mission_columns) > MISSION_SLOTS:
        raise RetailSimError(
            f"{MISSIONS}: {len(mission_columns)} mission-share columns, the customer history block has room "
            f"for {MISSION_SLOTS}"
        )
    second = visits.loc[visits["rank"] == 2, ["CUST_CODE", "share"]].rename(columns={"share": "second_store_share"})

    customers = (
        affinity.merge(per_trip, on="CUST_CODE", how="left", validate="1:1")
        .merge(per_line, on="CUST_CODE", how="left", validate="1:1")
        .merge(static, on="CUST_CODE", how="left", validate="1:1")
        .merge(missions.drop(columns="trips"), on="CUST_CODE", how="left", validate="1:1")
        .merge(second, on="CUST_CODE", how="left", validate="1:1")
        .sort_values("CUST_CODE", kind="stable")
        .reset_index(drop=True)
    )
    codes = customers["CUST_CODE"].tolist()
    trips = customers["trips"].to_numpy(np.float64)

    m = _Matrix(rows=len(customers))
    m.open_block("static", CUSTOMER_STATIC_SLOTS, "cold-start block (log trips standardized, blend weight "
                 f"min(1, trips/{COLD_START_TRIPS})), then one-hots of the segment columns the layout has, over the "
                 "named customers' training values (code order) plus an unknown slot, zero-padded")
    m.add("static", "log_trips", np.log1p(trips), "standardized")
    m.add("static", "cold_start_weight", np.minimum(1.0, trips / COLD_START_TRIPS), "raw")
    for column, vocabulary in segments.items():
        m.one_hot("static", column, customers[column], vocabulary, unknown=True)
    m.close_block()

    m.open_block("history", CUSTOMER_HISTORY_SLOTS, "behaviour over the customer's training trips: continuous columns "
                 "standardized over the training customers (missing -> mean), shares raw, zero-padded")
    # Weeks with market data from the customer's first trip to the end of training: a customer who
    # arrived late is not diluted by weeks before they existed, and a gap in the data is no absence.
    span = (len(data_weeks) - np.searchsorted(data_weeks, customers["first_week_index"].to_numpy())).astype(np.float64)
    continuous = {
        "visit_rate": trips / np.maximum(span, 1),
        "log_mean_items_per_trip": np.log1p(customers["mean_items"]),
        "log_mean_spend_per_trip": np.log1p(customers["mean_spend"]),
        "trip_spend_cv": customers["spend_cv"],
        "log_mean_quantity_per_line": np.log1p(customers["mean_quantity"]),
        "log_mean_line_spend": np.log1p(customers["mean_line_spend"]),
        "recency_weeks": last_week - customers["last_week_index"],
        "tenure_weeks": last_week - customers["first_week_index"] + 1,
        "log_trips_last_4_weeks": np.log1p(customers["trips_last_4"]),
        "log_trips_last_13_weeks": np.log1p(customers["trips_last_13"]),
        "log_mean_gap_days": np.log1p(customers["mean_gap_days"].astype(np.float64)),
        "gap_cv": customers["gap_cv"].astype(np.float64),
        "mean_hour": customers["mean_hour"],
        "hour_std": customers["hour_std"],
        "log_distinct_products": np.log1p(customers["products"]),
        "log_distinct_classes": np.log1p(customers["classes"]),
        "log_stores_visited": np.log1p(customers["stores_visited"]),
    }
    for name, values in continuous.items():
        m.add("history", name, values, "standardized")
    ratios = {
        "active_week_share": customers["active_weeks"] / np.maximum(span, 1),
        "repeat_rate": customers["repeat_rate"],
        "premium_spend_share": customers["premium_share"],
        "value_spend_share": customers["value_share"],
        "loyalty": customers["loyalty"],
        "second_store_share": customers["second_store_share"],
        "switching_frequency": customers["switching_frequency"],
    }
    for name, values in ratios.items():
        m.add("history", name, values, "share")
    for i, day in enumerate(WEEKDAYS):
        m.add("history", f"weekday_share_{day}", customers[f"wd{i}"], "share")
    for i, (part, _, _) in enumerate(DAY_PARTS):
        m.add("history", f"day_part_share_{part}", customers[f"dp{i}"], "share")
    for i in range(MISSION_SLOTS):
        if i < len(mission_columns):
            m.add("history", f"mission_pattern_{mission_columns[i]}", customers[mission_columns[i]], "share")
        else:
            m.add("history", f"mission_pattern__unused_{i}", np.zeros(len(customers)), "padding")
    for i in range(DIVISION_SLOTS):
        if i < len(divisions):
            m.add("history", f"division_spend_share_{divisions[i]}", customers[f"div{i}"], "share")
        else:
            m.add("history", f"division_spend_share__unused_{i}", np.zeros(len(customers)), "padding")
    m.close_block()
    matrix = m.write(ctx.out, CUSTOMER_MATRIX, CUSTOMER_NAMES, "CUST_CODE",
                     "rows are the named customers of the training weeks; anonymous baskets and customers first seen "
                     "later map to an UNK row added downstream (its static block can still use the segment one-hots)")
    _write_index(ctx.out, CUSTOMER_INDEX, "CUST_CODE", codes)
    return {CUSTOMER_MATRIX: matrix.shape[0], CUSTOMER_INDEX: len(codes), CUSTOMER_NAMES: matrix.shape[1]}


STORE_FEATURES = Stage(
    name="store_features",
    section="features",
    outputs=(STORE_MATRIX, STORE_INDEX, STORE_NAMES),
    run=build_store_features,
)
CUSTOMER_FEATURES = Stage(
    name="customer_features",
    section="features",
    outputs=(CUSTOMER_MATRIX, CUSTOMER_INDEX, CUSTOMER_NAMES),
    run=build_customer_features,
    depends_on=("store_affinity", "mission_patterns"),
)
