"""Where an ingested dataset keeps its files: the one loader downstream stages use.

Layout of ``DIR`` written by ``retailsim data ingest``::

    DIR/transactions/<SHOP_WEEK>/part-f<file>.parquet   canonical rows (schema.CANONICAL_SCHEMA)
    DIR/quarantine.parquet                              rejected rows, original text + reason
    DIR/calendar.parquet                                shop_week, date_from, date_to (time.csv or inferred)
    DIR/ingest_report.json                              counts, weeks, timings, inputs

Week folders are named by the bare week number, not ``SHOP_WEEK=yyyyww``: SHOP_WEEK is also a column
of every file, and a hive-style folder name would make pyarrow and pandas infer a second, clashing
SHOP_WEEK column when the folder is read as a dataset.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from world_model.errors import RetailSimError

TRANSACTIONS = "transactions"
CALENDAR_FILE = "calendar.parquet"
PART_PATTERN = "part-*.parquet"


def week_dir(root: str | Path, week: int | str) -> Path:
    """Folder of one week's canonical parts."""
    return Path(root) / TRANSACTIONS / str(week)


def transactions_glob(root: str | Path) -> str:
    """A glob of every canonical part, for DuckDB's ``read_parquet``."""
    return str(Path(root) / TRANSACTIONS / "*" / PART_PATTERN)


def transaction_files(root: str | Path) -> list[Path]:
    """Every canonical part in week order; a clear error when ``root`` holds no ingested data."""
    files = sorted(Path(root).glob(f"{TRANSACTIONS}/*/{PART_PATTERN}"))
    if not files:
        raise RetailSimError(f"{root}: no ingested transactions (run 'retailsim data ingest' first)")
    return files


def read_calendar_table(root: str | Path) -> pa.Table:
    """The calendar ingest checked dates against: (shop_week int32, date_from date32, date_to date32)."""
    path = Path(root) / CALENDAR_FILE
    if not path.exists():
        raise RetailSimError(f"{root}: no {CALENDAR_FILE} (ingest it again with this version of retailsim)")
    return pq.read_table(path)


def read_transactions(root: str | Path, columns: list[str] | None = None) -> pa.Table:
    """All canonical rows in memory: for small datasets and tests; use DuckDB on the glob otherwise."""
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in transaction_files(root)])


# How canonical parts are written. zstd level 1 compresses as well as the default level here, faster;
# min/max statistics are kept only where readers filter (dates, numbers, store, product): computing them
# for every text column costs a fifth of the write time and helps no query.
PART_WRITE_OPTIONS: dict = {
    "compression": "zstd",
    "compression_level": 1,
    "write_statistics": [
        "SHOP_WEEK", "SHOP_DATE", "SHOP_WEEKDAY", "SHOP_HOUR", "QUANTITY", "SPEND", "STORE_CODE", "PROD_CODE"
    ],
}
